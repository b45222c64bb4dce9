"""The throwaway PostgreSQL server of framebroker.testing, skipped (failed in CI) without one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from framebroker.testing.postgres import PostgresServer, pg_bin, query
from tests.conftest import require

__all__ = ["PostgresServer", "postgres_server", "query"]


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    require(pg_bin() is not None, "Debian's postgresql (apt-get install postgresql)")
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()
