"""Feeds (protocol v1.6): credit-based fan-out, the pure parts and one loopback broker.

- broker.groups serves a feed as a private group of one: every stream it matches, one
  newest frame per credit, the longest-waiting stream first, starting from the cached
  newest frames; feeds never take frames from each other or from work groups.
- consumers.credit.CreditWindow: 1 frame of credit on a slow path, up to 16 on a fast
  one, never more bytes than its cap.
- framebroker.subscribe through a real broker: a feed by default, every stream served,
  the broker counting it as a feed; ``plain_sub`` still the SUB path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import framebroker
from framebroker.broker.groups import WorkGroups
from framebroker.consumers.config import ConsumerConfig
from framebroker.consumers.credit import MAX_FRAMES, CreditWindow
from framebroker.errors import ProtocolError
from framebroker.testing import local_cluster, make_message, wait_until
from framebroker.work_protocol import (
    VERSION_FEEDS,
    WorkRequest,
    decode_work_request,
    encode_work_request,
)
from tests.test_groups import entry, frame, ready, sent

MS = 1_000_000


def feed(streams: tuple[str, ...] = ("*",), credit: int = 1, received: int = 0) -> WorkRequest:
    return WorkRequest(
        op="feed", streams=streams, credit=credit, received=received, version=VERSION_FEEDS
    )


# --- the request ------------------------------------------------------------------------


def test_feed_requests_round_trip_without_a_group() -> None:
    request = WorkRequest(
        op="feed", streams=("cam1", "site1/"), credit=4, received=41, name="f1",
        version=VERSION_FEEDS,
    )  # fmt: skip
    data = encode_work_request(request)
    assert b"group" not in data
    assert decode_work_request(data) == request
    assert msgpack.unpackb(data)["v"] == [1, 6]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"op": "feed", "credit": 1, "received": 0}, "lacks required key 'streams'"),
        ({"op": "feed", "streams": [], "credit": 1, "received": 0}, "1..64 patterns"),
        ({"op": "feed", "streams": ["*"], "credit": -1, "received": 0}, "must be uint"),
        ({"op": "feed", "streams": ["bad id"], "credit": 1, "received": 0}, "stream id"),
    ],
)
def test_bad_feed_requests_raise_protocol_error(fields: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_work_request(msgpack.packb({"v": [1, 3], **fields}))


# --- the broker's bookkeeping -----------------------------------------------------------


def test_a_feed_gets_every_stream_and_shares_nothing_with_other_feeds_or_groups() -> None:
    groups = WorkGroups()
    groups.ready(b"f1", feed(credit=4), 0)
    groups.ready(b"f2", feed(credit=4), 0)
    groups.ready(b"w1", ready("g", credit=4), 0)
    a, b = entry("a"), entry("b")
    assert sorted(sent(groups.offer(a))) == [(b"f1", "a#0"), (b"f2", "a#0"), (b"w1", "a#0")]
    assert sorted(sent(groups.offer(b))) == [(b"f1", "b#0"), (b"f2", "b#0"), (b"w1", "b#0")]
    assert groups.feed_count() == 2 and groups.worker_count() == 1
    assert [g.group for g in groups.snapshot(0)] == ["g"]  # feeds are not work groups
    assert groups.feed_sent == 4


def test_a_feed_without_credit_skips_to_the_newest_and_streams_take_turns() -> None:
    """Four streams, credit 1: each request gets the newest frame of the stream that has
    waited longest, so the streams are served in turn, never a run of old frames."""
    groups = WorkGroups()
    streams = [entry(f"s{i}") for i in range(4)]
    groups.ready(b"f", feed(), 0)
    assert sent(groups.offer(streams[0])) == [(b"f", "s0#0")]  # in flight: no credit left
    for seq in range(1, 4):
        for e in streams:
            assert groups.offer(frame(e, seq)) == []
    served = [sent(groups.ready(b"f", feed(received=n), 0)) for n in range(1, 5)]
    # s0's frame #1 began waiting first, then s1, s2, s3 (s1..s3's #0 never came)
    assert served == [[(b"f", "s0#3")], [(b"f", "s1#3")], [(b"f", "s2#3")], [(b"f", "s3#3")]]
    assert groups.feed_skipped == 8  # #1 and #2 of every stream were replaced unclaimed
    assert groups.offer(frame(streams[2], 4)) == []  # credit used up again


def test_a_new_feed_starts_with_the_newest_cached_frames() -> None:
    cached = [entry("site1/a", 7), entry("site1/b", 3)]
    groups = WorkGroups(newest=lambda prefixes: [e for e in cached if e.topic.startswith(prefixes)])
    got = sent(groups.ready(b"f", feed(("site1/",), credit=8), 0))
    assert got == [(b"f", "site1/a#7"), (b"f", "site1/b#3")]


def test_feeds_are_bounded_and_forgotten_like_workers() -> None:
    groups = WorkGroups(max_feeds=1, worker_timeout=1.0)
    groups.ready(b"f1", feed(), 0)
    with pytest.raises(ProtocolError, match="at most 1 feeds"):
        groups.ready(b"f2", feed(), 0)
    groups.expire(2 * 1_000_000_000)
    assert groups.feed_count() == 0 and not groups
    groups.ready(b"f2", feed(), 0)
    groups.ready(b"f2", ready("g"), 0)  # the same connection turns into a worker
    assert groups.feed_count() == 0 and groups.worker_count() == 1


# --- the client's credit window ---------------------------------------------------------


def run_window(window: CreditWindow, interval_ms: float, size: int, frames: int) -> list[int]:
    now, out = 0, []
    for _ in range(frames):
        now += int(interval_ms * MS)
        out.append(window.arrived(now, size))
    return out


def test_the_window_stays_one_frame_on_a_slow_link() -> None:
    # 27 kB frames over 3 Mbit/s: one every 72 ms, far less than a frame per 50 ms
    assert set(run_window(CreditWindow(), 72, 27_000, 100)) == {1}


def test_the_window_grows_to_its_cap_on_a_fast_path_and_falls_when_it_slows() -> None:
    window = CreditWindow()
    fast = run_window(window, 0.5, 50_000, 50)  # a frame every 0.5 ms: window-limited
    assert fast[-1] == MAX_FRAMES
    assert fast == sorted(fast)  # it only grew, doubling at most
    slow = run_window(window, 80, 50_000, 20)  # the link turns slow
    assert slow[-1] == 1


def test_the_window_never_holds_more_bytes_than_its_cap() -> None:
    raw_1080p = 1920 * 1080 * 3
    window = CreditWindow(max_bytes=4 * raw_1080p + 1)
    assert max(run_window(window, 0.5, raw_1080p, 50)) == 4


# --- through a real broker --------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[framebroker.testing.LocalCluster]:
    with local_cluster(tmp_path) as c:
        yield c


def test_subscribe_is_a_feed_by_default_and_gets_every_stream(cluster) -> None:
    names = [f"feed/s{i}" for i in range(5)]
    got: dict[str, set[int]] = {}
    with framebroker.subscribe(
        "feed/", publish=cluster.publish_endpoint, work=cluster.work, send_results=False, timeout=10
    ) as frames:
        assert frames.config.plain_sub is False
        seq = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(len(got.get(n, ())) >= 3 for n in names):
            for name in names:
                cluster.publish(make_message(name, seq=seq))
            seq += 1
            frame = frames.latest(0.05)
            while frame is not None:
                got.setdefault(frame.stream, set()).add(frame.seq)
                frame = frames.latest(0)
        stats = cluster.broker.stats()
        assert stats.feeds == 1 and stats.feed_sent >= 15
    assert set(got) == set(names)
    wait_until(lambda: cluster.broker.stats().feeds == 0, timeout=5)  # it left on close


def test_plain_sub_still_takes_the_publish_port(cluster) -> None:
    config = ConsumerConfig(publish=cluster.publish_endpoint, work=cluster.work, plain_sub=True)
    assert config.plain_sub is True
    with framebroker.subscribe(
        "plain/", publish=cluster.publish_endpoint, work=cluster.work, plain_sub=True,
        send_results=False, timeout=10,
    ) as frames:  # fmt: skip
        wait_until(lambda: cluster.broker.stats().subscriptions >= 1, timeout=5)
        cluster.publish(make_message("plain/a", seq=0))
        frame = frames.latest(5)
        assert frame is not None and frame.stream == "plain/a"
        assert cluster.broker.stats().feeds == 0


def test_publish_without_work_falls_back_to_plain_sub_and_says_so(caplog) -> None:
    config = ConsumerConfig(publish="tcp://10.0.0.1:7000")
    assert config.plain_sub is True
    assert "without --work" in caplog.text
    assert ConsumerConfig().plain_sub is False
    assert ConsumerConfig(publish="tcp://h:1", work="tcp://h:2").plain_sub is False


def test_a_late_frame_halves_the_window_and_holds_it() -> None:
    """A consumer starved of CPU reads queued frames back to back: the rate looks fast,
    but the frames' delays say they queued; the window falls and stays down a while."""
    window = CreditWindow()
    now = 0
    for _ in range(50):  # fast path, 5 ms base delay: the window grows to its cap
        now += MS // 2
        window.arrived(now, 50_000, "s", 5 * MS)
    assert window.window == MAX_FRAMES
    now += MS // 2
    assert window.arrived(now, 50_000, "s", 120 * MS) == MAX_FRAMES // 2  # 115 ms late
    for _ in range(20):  # on time again, fast again: held for a second
        now += MS // 2
        window.arrived(now, 50_000, "s", 5 * MS)
    assert window.window == MAX_FRAMES // 2 and window.late == 1


def test_spec_feed_request_example_matches_the_encoder() -> None:
    """The hex dump in docs/protocol.md ("Feeds") is what the encoder produces."""
    import pathlib
    import re

    spec = (pathlib.Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    section = spec.split("## Feeds", 1)[1].split("\n## ", 1)[0]
    dump = section.split("Example: feed `f1`", 1)[1].split("```")[1]
    data = bytes.fromhex(" ".join(re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)", dump, re.M)))
    request = WorkRequest(
        op="feed", streams=("site1/",), credit=4, received=41, name="f1", version=VERSION_FEEDS
    )
    assert data == encode_work_request(request)
    assert decode_work_request(data) == request
