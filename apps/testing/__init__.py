"""framebroker.testing: test support for processors and for framebroker itself.

What dramatiq's StubBroker is to dramatiq: run the real thing small, in the test::

    from framebroker.testing import local_cluster, make_frame, make_message, wait_until

    def test_brightness():                        # a unit test: no sockets at all
        assert brightness(make_frame(image=white))["mean"] == 255

    def test_brightness_end_to_end(framebroker_cluster):   # the pytest fixture
        with framebroker_cluster.consumer(brightness, streams=("cam1",)):
            framebroker_cluster.publish(make_message("cam1", seq=0))
            (stored,) = framebroker_cluster.wait_for_results(1)

::

    cluster.py   LocalCluster, local_cluster(folder): a broker and a sink in this process
    frames.py    make_message / make_frame / make_header / synthetic_image: no camera needed
    waiting.py   wait_until(predicate, timeout, what): poll, or fail saying what never came
    postgres.py  PostgresServer, postgres_server(): a throwaway PostgreSQL (initdb, pg_ctl)
    plugin.py    the pytest plugin (entry point ``pytest11``): the ``framebroker_cluster``
                 fixture, a LocalCluster in the test's tmp_path

Installed as ``framebroker.testing``: an application above the roles (it runs a broker,
a sink and consumers); no role imports it. Its names are imported on first use, so the
pytest plugin that pytest loads in every session costs nothing until a test uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import LocalCluster, local_cluster
    from .frames import make_frame, make_header, make_message, synthetic_image
    from .waiting import wait_until

_WHERE = {
    "LocalCluster": "cluster",
    "local_cluster": "cluster",
    "make_frame": "frames",
    "make_header": "frames",
    "make_message": "frames",
    "synthetic_image": "frames",
    "wait_until": "waiting",
}

__all__ = [
    "LocalCluster",
    "local_cluster",
    "make_frame",
    "make_header",
    "make_message",
    "synthetic_image",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'framebroker.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value
