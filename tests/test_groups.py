"""Work groups: the pure bookkeeping (broker.groups) and the request messages."""

from __future__ import annotations

import pytest

from framebroker.broker.groups import WorkGroups
from framebroker.broker.registry import StreamEntry
from framebroker.control_protocol import encode_request
from framebroker.errors import ProtocolError, VersionError
from framebroker.protocol import FrameHeader
from framebroker.work_protocol import (
    MAX_CREDIT,
    WorkRequest,
    decode_work_request,
    encode_work_request,
    is_reply,
)

S = 1_000_000_000


def entry(stream: str, seq: int = 0) -> StreamEntry:
    header = FrameHeader(
        stream=stream, session=1, seq=seq, t_capture=1, t_publish=1, encoding="jpeg",
        shape=(2, 2, 3),
    )  # fmt: skip
    e = StreamEntry(header, now=0)
    e.cached = f"{stream}#{seq}"
    return e


def frame(e: StreamEntry, seq: int) -> StreamEntry:
    """The stream's next frame arrived (what the registry does to the entry)."""
    e.seq = seq
    e.cached = f"{e.stream}#{seq}"
    return e


def ready(group: str = "g", streams: tuple[str, ...] = ("*",), credit: int = 1, received: int = 0):
    return WorkRequest(op="ready", group=group, streams=streams, credit=credit, received=received)


def sent(pairs) -> list[tuple[bytes, str]]:
    return [(w.id, e.cached) for w, e in pairs]


def test_an_idle_worker_gets_a_new_frame_at_once_and_only_once() -> None:
    groups = WorkGroups()
    assert not groups
    assert groups.ready(b"w1", ready(), 0) == []  # nothing waiting yet: w1 is idle
    cam = entry("cam1")
    assert sent(groups.offer(cam)) == [(b"w1", "cam1#0")]
    # w1 has no credit left until it asks again: the next frame waits, unclaimed
    assert groups.offer(frame(cam, 1)) == []
    assert groups.snapshot(0)[0].waiting == 1


def test_frames_that_go_stale_while_every_worker_is_busy_are_skipped_not_queued() -> None:
    groups = WorkGroups()
    cam = entry("cam1")
    groups.ready(b"w1", ready(), 0)
    groups.offer(cam)  # w1 busy with #0
    for seq in range(1, 6):
        assert groups.offer(frame(cam, seq)) == []
    # w1 asks again having received 1 frame: it gets the newest, #5; #1..#4 were skipped
    assert sent(groups.ready(b"w1", ready(received=1), 0)) == [(b"w1", "cam1#5")]
    (info,) = groups.snapshot(0)
    assert (info.dispatched, info.skipped, info.waiting) == (2, 4, 0)


def test_each_frame_goes_to_one_worker_of_a_group_the_longest_idle_first() -> None:
    groups = WorkGroups()
    for wid in (b"a", b"b", b"c"):
        groups.ready(wid, ready(), 0)
    cam = entry("cam1")
    got = [sent(groups.offer(frame(cam, seq)))[0][0] for seq in range(3)]
    assert got == [b"a", b"b", b"c"]
    assert groups.offer(frame(cam, 3)) == []  # all busy
    assert sent(groups.ready(b"b", ready(received=1), 0)) == [(b"b", "cam1#3")]


def test_every_group_sees_each_frame_once_and_groups_are_independent() -> None:
    groups = WorkGroups()
    groups.ready(b"a1", ready("detect"), 0)
    groups.ready(b"b1", ready("record"), 0)
    pairs = sent(groups.offer(entry("cam1")))
    assert sorted(pairs) == [(b"a1", "cam1#0"), (b"b1", "cam1#0")]


def test_workers_get_only_the_streams_their_patterns_select() -> None:
    groups = WorkGroups()
    groups.ready(b"site", ready(streams=("site1/",)), 0)
    groups.ready(b"cam1", ready(streams=("cam1",)), 0)
    assert sent(groups.offer(entry("cam10"))) == []  # "cam1" is exact: not cam10
    assert sent(groups.offer(entry("site1/door"))) == [(b"site", "site1/door#0")]
    assert sent(groups.offer(entry("cam1"))) == [(b"cam1", "cam1#0")]
    # cam10 is nobody's: the group does not keep it waiting
    assert groups.snapshot(0)[0].waiting == 0


def test_a_worker_asking_gets_the_stream_that_waited_longest() -> None:
    groups = WorkGroups()
    groups.ready(b"w", ready(), 0)
    cams = [entry(f"cam{i}") for i in range(3)]
    groups.offer(cams[0])  # w takes cam0#0
    groups.offer(cams[1])  # waits
    groups.offer(cams[2])  # waits
    groups.offer(frame(cams[1], 1))  # cam1 still waits first, now with #1
    assert sent(groups.ready(b"w", ready(received=1), 0)) == [(b"w", "cam1#1")]
    assert sent(groups.ready(b"w", ready(received=2), 0)) == [(b"w", "cam2#0")]


def test_a_repeated_request_grants_nothing_twice() -> None:
    groups = WorkGroups()
    groups.ready(b"w", ready(credit=1, received=0), 0)
    cam = entry("cam1")
    assert len(groups.offer(cam)) == 1
    # the heartbeat written before #0 arrived: #0 is still in flight, so no new credit
    assert groups.ready(b"w", ready(credit=1, received=0), 0) == []
    assert groups.offer(frame(cam, 1)) == []
    assert sent(groups.ready(b"w", ready(credit=1, received=1), 0)) == [(b"w", "cam1#1")]


def test_credit_above_one_lets_several_frames_fly() -> None:
    groups = WorkGroups()
    cams = [entry(f"cam{i}") for i in range(3)]
    groups.ready(b"w", ready(credit=2), 0)
    assert [len(groups.offer(c)) for c in cams] == [1, 1, 0]


def test_a_worker_known_to_a_restarted_broker_starts_from_its_own_count() -> None:
    groups = WorkGroups()  # a new broker; the worker received 500 frames from the old one
    groups.ready(b"w", ready(received=500), 0)
    cam = entry("cam1")
    assert len(groups.offer(cam)) == 1
    assert groups.offer(frame(cam, 1)) == []  # one in flight
    assert len(groups.ready(b"w", ready(received=501), 0)) == 1


def test_leaving_timing_out_and_unreachable_workers_are_forgotten() -> None:
    groups = WorkGroups(worker_timeout=5.0)
    groups.ready(b"a", ready(), 0)
    groups.ready(b"b", ready(), 4 * S)
    groups.ready(b"c", ready(), 4 * S)
    groups.expire(6 * S)  # a: silent for 6 s
    assert [w.name for w in groups.snapshot(6 * S)[0].workers] == [b"b".hex(), b"c".hex()]
    groups.leave(b"b")
    cam = entry("cam1")
    (pair,) = groups.offer(cam)
    assert pair[0].id == b"c"
    # c turns out to be gone: the frame is not lost for the group, it waits for a worker
    assert groups.undeliverable(pair[0], cam) == []
    assert not groups and len(groups) == 0  # the last worker took the group with it
    assert (groups.joined, groups.left) == (3, 3)


def test_an_unreachable_workers_frame_goes_to_another_idle_worker() -> None:
    groups = WorkGroups()
    groups.ready(b"a", ready(), 0)
    groups.ready(b"b", ready(), 0)
    cam = entry("cam1")
    (pair,) = groups.offer(cam)
    assert sent(groups.undeliverable(pair[0], cam)) == [(b"b", "cam1#0")]
    assert groups.snapshot(0)[0].dispatched == 1


def test_a_stale_stream_is_not_handed_out() -> None:
    groups = WorkGroups()
    groups.ready(b"w", ready(), 0)
    cam, other = entry("cam1"), entry("cam2")
    groups.offer(cam)  # w busy
    groups.offer(other)  # waits
    other.cached = None  # the registry marked cam2 stale
    assert groups.ready(b"w", ready(received=1), 0) == []


def test_limits_refuse_one_group_or_worker_too_many() -> None:
    groups = WorkGroups(max_groups=1, max_workers=2)
    groups.ready(b"a", ready("one"), 0)
    groups.ready(b"b", ready("one"), 0)
    with pytest.raises(ProtocolError, match="full") as full:
        groups.ready(b"c", ready("one"), 0)
    assert full.value.kind == "limit"
    with pytest.raises(ProtocolError, match="at most 1 groups"):
        groups.ready(b"d", ready("two"), 0)
    assert groups.worker_count() == 2


def test_a_worker_that_changes_its_group_moves() -> None:
    groups = WorkGroups()
    groups.ready(b"w", ready("one"), 0)
    groups.ready(b"w", ready("two"), 0)
    assert [g.group for g in groups.snapshot(0)] == ["two"]


# --- the wire messages -----------------------------------------------------------------


def test_work_requests_round_trip_and_clamp_credit() -> None:
    request = WorkRequest(
        op="ready", group="det.v2", streams=("cam1", "site1/", "*"), credit=3, received=7,
        name="gpu-1",
    )  # fmt: skip
    assert decode_work_request(encode_work_request(request)) == request
    big = decode_work_request(encode_work_request(ready(credit=1000)))
    assert big.credit == MAX_CREDIT
    leave = decode_work_request(encode_work_request(WorkRequest(op="leave")))
    assert leave.op == "leave"
    assert request.prefixes() == (b"cam1\x00", b"site1/", b"")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"op": "work"}, "unknown work op"),
        ({"op": "ready", "group": "a b", "streams": ["*"], "credit": 1, "received": 0}, "group"),
        ({"op": "ready", "group": "g", "streams": [], "credit": 1, "received": 0}, "streams"),
        ({"op": "ready", "group": "g", "streams": ["/x"], "credit": 1, "received": 0}, "stream"),
        ({"op": "ready", "group": "g", "streams": [1], "credit": 1, "received": 0}, "string"),
        ({"op": "ready", "group": "g", "streams": ["*"], "credit": -1, "received": 0}, "uint"),
        ({"op": "ready", "group": "g", "streams": ["*"], "credit": True, "received": 0}, "uint"),
        ({"op": "ready", "group": "g", "streams": ["*"], "credit": 1}, "received"),
    ],
)
def test_bad_work_requests_raise_protocol_error(fields: dict, match: str) -> None:
    import msgpack

    with pytest.raises(ProtocolError, match=match):
        decode_work_request(msgpack.packb({"v": [1, 2], **fields}))


def test_work_requests_of_another_major_version_are_rejected() -> None:
    import msgpack

    with pytest.raises(VersionError):
        decode_work_request(msgpack.packb({"v": [2, 0], "op": "leave"}))
    with pytest.raises(ProtocolError):
        decode_work_request(b"\xc1garbage")


def test_a_worker_tells_replies_from_frames_by_the_first_byte() -> None:
    assert is_reply(encode_request("ping"))
    assert not is_reply(b"cam1\x00\x01....")
    assert not is_reply(b"")


def test_spec_work_request_example_matches_the_encoder() -> None:
    """The hex dumps in docs/protocol.md ("Work groups") are what the encoder produces."""
    import pathlib
    import re

    spec = (pathlib.Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    section = spec.split("## Work groups", 1)[1].split("\n## ", 1)[0]
    dump = section.split("Example: worker `w1`", 1)[1].split("```")[1]
    data = bytes.fromhex(" ".join(re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)", dump, re.M)))
    request = WorkRequest(
        op="ready", group="detect", streams=("site1/",), credit=1, received=41, name="w1"
    )
    assert data == encode_work_request(request)
    assert decode_work_request(data) == request
    leave = re.search(r"And `leave`, 15 bytes: `([0-9a-f ]+)`", section)
    assert leave and bytes.fromhex(leave[1]) == encode_work_request(WorkRequest(op="leave"))
