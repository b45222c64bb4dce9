"""The pytest plugin of framebroker.testing: the ``framebroker_cluster`` fixture.

Registered through the ``pytest11`` entry point, so installing framebroker is enough: any
test may ask for ``framebroker_cluster`` and gets a :class:`LocalCluster` (a broker and a
sink on free loopback ports, results in the test's ``tmp_path``), closed after the test.
Importing this module imports nothing heavy: pytest loads it in every session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .cluster import LocalCluster


@pytest.fixture
def framebroker_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A broker and a sink running in this process for one test (see local_cluster)."""
    from .cluster import local_cluster

    with local_cluster(tmp_path) as cluster:
        yield cluster
