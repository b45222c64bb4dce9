"""LatestSlots: newest frame wins, duplicates refused, fair across streams, fps cap."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from framebroker.consumers.slots import LatestSlots, Offer
from framebroker.testing import make_frame


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


frame = partial(make_frame, session=7)  # stream, seq: a small raw frame of that stream


def test_newest_frame_wins_and_superseded_ones_are_reported():
    slots = LatestSlots()
    assert slots.offer(frame(seq=1)) is Offer.NEW
    assert slots.offer(frame(seq=2)) is Offer.REPLACED
    assert slots.offer(frame(seq=3)) is Offer.REPLACED
    taken = slots.take(timeout=0)
    assert taken is not None and taken.seq == 3
    assert slots.take(timeout=0) is None


def test_duplicates_and_older_frames_are_refused():
    slots = LatestSlots()
    assert slots.offer(frame(seq=5)) is Offer.NEW
    assert slots.take(timeout=0).seq == 5
    # The broker's last-value cache re-sends the newest frame on a new subscription.
    assert slots.offer(frame(seq=5)) is Offer.DUPLICATE
    assert slots.offer(frame(seq=4)) is Offer.DUPLICATE
    assert slots.take(timeout=0) is None
    assert slots.offer(frame(seq=6)) is Offer.NEW
    assert slots.offer(frame(seq=6)) is Offer.DUPLICATE
    assert slots.take(timeout=0).seq == 6


def test_a_new_session_restarts_the_sequence():
    slots = LatestSlots()
    slots.offer(frame(seq=100, session=1))
    slots.take(timeout=0)
    assert slots.offer(frame(seq=0, session=2)) is Offer.NEW  # producer restarted
    assert slots.take(timeout=0).session == 2


def test_streams_are_independent():
    slots = LatestSlots()
    assert slots.offer(frame("a", seq=3)) is Offer.NEW
    assert slots.offer(frame("b", seq=1)) is Offer.NEW
    assert slots.pending() == 2
    assert {slots.take(timeout=0).stream, slots.take(timeout=0).stream} == {"a", "b"}
    assert slots.streams() == ["a", "b"]


def test_a_busy_stream_does_not_starve_a_quiet_one():
    slots = LatestSlots()
    taken: list[str] = []
    seq = {"busy": 0, "quiet": 0}

    def publish(stream):
        seq[stream] += 1
        slots.offer(frame(stream, seq=seq[stream]))

    publish("quiet")
    for step in range(60):
        for _ in range(10):  # "busy" gets 10 new frames between takes
            publish("busy")
        if step % 3 == 0:
            publish("quiet")  # "quiet" gets one every third take
        taken.append(slots.take(timeout=0).stream)
    # Whenever the quiet stream has a frame waiting, it is served next.
    assert taken == ["quiet" if step % 3 == 0 else "busy" for step in range(60)]


def test_round_robin_over_streams_that_always_have_frames():
    slots = LatestSlots()
    streams = ["s0", "s1", "s2", "s3"]
    order = []
    for n in range(1, 41):
        for s in streams:
            slots.offer(frame(s, seq=n))
        order.append(slots.take(timeout=0).stream)
    for i in range(0, 40, 4):
        assert sorted(order[i : i + 4]) == streams


def test_fps_cap_limits_each_stream_separately():
    clock = FakeClock()
    slots = LatestSlots(fps=10, clock=clock)
    taken = {"a": 0, "b": 0}
    for seq in range(1, 1001):  # 1 s at 1 ms steps, both streams always have a new frame
        slots.offer(frame("a", seq=seq))
        slots.offer(frame("b", seq=seq))
        while (got := slots.take(timeout=0)) is not None:
            taken[got.stream] += 1
        clock.now += 0.001
    assert taken == {"a": 10, "b": 10}


def test_fps_cap_keeps_the_average_rate_despite_late_frames():
    clock = FakeClock()
    slots = LatestSlots(fps=10, clock=clock)
    count = 0
    for seq in range(1, 201):  # 2 s; a frame every 10 ms, taken 3 ms after it arrives
        slots.offer(frame(seq=seq))
        clock.now += 0.003
        if slots.take(timeout=0) is not None:
            count += 1
        clock.now += 0.007
    assert count == 20


def test_take_waits_for_a_frame_and_close_wakes_it():
    slots = LatestSlots()
    got = []
    waiter = threading.Thread(target=lambda: got.append(slots.take(timeout=5)))
    waiter.start()
    time.sleep(0.05)
    slots.offer(frame(seq=1))
    waiter.join(2)
    assert not waiter.is_alive() and got[0].seq == 1

    waiter = threading.Thread(target=lambda: got.append(slots.take()))
    waiter.start()
    slots.close()
    waiter.join(2)
    assert not waiter.is_alive() and got[1] is None
    assert slots.closed


def test_take_times_out_when_capped_streams_are_not_yet_due():
    slots = LatestSlots(fps=0.5)  # one frame per 2 s
    slots.offer(frame(seq=1))
    assert slots.take(timeout=0) is not None
    slots.offer(frame(seq=2))
    assert slots.take(timeout=0.05) is None
    assert slots.pending() == 1


@pytest.mark.parametrize("fps", [None, 5.0])
def test_empty_slots_give_none_without_waiting(fps):
    assert LatestSlots(fps=fps).take(timeout=0) is None
