"""Testing your own processor, as a user of framebroker would.

Two kinds of test: the processor called on a frame made without a camera (fast, no
sockets), and the processor run by a real consumer against a real broker and sink, in the
test process, through the ``framebroker_cluster`` fixture that framebroker's pytest plugin
provides once framebroker is installed (no conftest needed). Run::

    pytest examples/test_brightness.py
"""

from __future__ import annotations

import numpy as np
from brightness import brightness

from framebroker.testing import LocalCluster, make_frame, make_message

WHITE = np.full((48, 64, 3), 255, np.uint8)
BLACK = np.zeros((48, 64), np.uint8)


def test_a_white_frame_is_bright():
    assert brightness(make_frame(image=WHITE)) == {"mean": 255.0, "dark": False, "seq": 0}


def test_a_black_jpeg_frame_is_dark():
    result = brightness(make_frame("cam1", seq=7, image=BLACK, encoding="jpeg"))
    assert result is not None and result["dark"] and result["seq"] == 7


def test_results_of_the_subscribed_streams_reach_the_sink(framebroker_cluster: LocalCluster):
    cluster = framebroker_cluster
    with cluster.consumer(brightness, name="brightness", streams=("site1/",)):
        cluster.publish(make_message("site1/cam1", seq=0, image=WHITE))
        cluster.publish(make_message("site1/cam2", seq=0, image=BLACK))
        cluster.publish(make_message("other/cam", seq=0))  # not subscribed: not processed
        stored = cluster.wait_for_results(2)
    assert {r.stream: r.result for r in stored} == {
        "site1/cam1": {"mean": 255.0, "dark": False, "seq": 0},
        "site1/cam2": {"mean": 0.0, "dark": True, "seq": 0},
    }
    assert {r.consumer for r in stored} == {"brightness"}
