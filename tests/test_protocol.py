"""Protocol v1: round-trips, exact topic filtering, and rejections of bad bytes."""

from __future__ import annotations

import struct

import msgpack
import pytest

from framebroker import control_protocol, protocol
from framebroker.errors import ProtocolError, VersionError
from framebroker.protocol import FrameHeader, ResultMessage


def header(**overrides):
    fields = dict(
        stream="site1/cam1",
        session=123456789,
        seq=42,
        t_capture=1_700_000_000_000_000_000,
        t_publish=1_700_000_000_001_000_000,
        encoding="jpeg",
        shape=(480, 640, 3),
        dtype="uint8",
        pixfmt="bgr24",
        meta={"location": "gate"},
    )
    fields.update(overrides)
    return FrameHeader(**fields)


JPEG = b"\xff\xd8jpeg-bytes"  # starts like a JPEG file: passes the payload check


def raw_message(topic: bytes, major: int, header_map, payload: bytes = JPEG) -> bytes:
    packed = msgpack.packb(header_map)
    return topic + b"\x00" + bytes([major]) + struct.pack(">I", len(packed)) + packed + payload


def test_frame_round_trip():
    h = header()
    data = protocol.encode_frame(h, b"\xff\xd8jpeg-bytes")
    msg = protocol.decode_frame(data)
    assert msg.header == h
    assert bytes(msg.payload) == b"\xff\xd8jpeg-bytes"


def test_frame_starts_with_exact_topic():
    data = protocol.encode_frame(header(stream="cam1"), b"")
    assert data.startswith(b"cam1\x00")
    assert not data.startswith(protocol.topic_for("cam10"))
    assert protocol.split_topic(data) == (b"cam1", 5)


def test_header_without_meta_omits_it():
    data = protocol.encode_frame(header(meta={}), JPEG)
    assert protocol.decode_frame(data).header.meta == {}


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("cam1", b"cam1\x00"), ("site1/", b"site1/"), ("site1/*", b"site1/"), ("*", b""), ("", b"")],
)
def test_subscription_for_patterns(pattern, prefix):
    assert protocol.subscription_for(pattern) == prefix


def test_group_prefix_matches_members_only():
    members = [protocol.encode_frame(header(stream=s), b"") for s in ("site1/a", "site1/b")]
    other = protocol.encode_frame(header(stream="site10/a"), b"")
    prefix = protocol.subscription_for("site1/")
    assert all(m.startswith(prefix) for m in members)
    assert not other.startswith(prefix)


@pytest.mark.parametrize("stream", ["", "/abs", "$streams", "has space", "nul\x00", "x" * 201])
def test_invalid_stream_ids_rejected(stream):
    with pytest.raises(ProtocolError):
        protocol.topic_for(stream)


def test_system_messages_are_told_from_frames():
    """ "$" topics are the broker's: no stream id can make one, so no frame is mistaken."""
    assert protocol.is_system_message(b"$streams\x00{}")
    assert protocol.is_system_message(memoryview(b"$"))
    frame = protocol.encode_frame(header(stream="cam1"), JPEG)
    assert not protocol.is_system_message(frame) and not protocol.is_system_message(b"")
    with pytest.raises(ProtocolError):
        protocol.validate_stream_id("$streams")


def test_unknown_header_keys_are_ignored():
    m = header().to_map() | {"future_field": [1, 2, 3]}
    m["v"] = [1, 7]  # a newer minor version adds fields
    msg = protocol.decode_frame(raw_message(b"site1/cam1", 1, m))
    assert msg.header.seq == 42
    assert msg.header.version == (1, 7)


def test_unknown_major_version_in_preamble_rejected_clearly():
    with pytest.raises(VersionError, match="major version 2"):
        protocol.decode_frame(raw_message(b"site1/cam1", 2, header().to_map()))


def test_unknown_major_version_in_header_rejected():
    m = header().to_map() | {"v": [2, 0]}
    with pytest.raises(VersionError, match="major version 2"):
        protocol.decode_frame(raw_message(b"site1/cam1", 1, m))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"no terminator at all",
        b"\x00starts with terminator",
        b"cam1\x00",  # truncated before the preamble
        b"cam1\x00\x01\x00\x00",  # truncated header length
        b"cam1\x00\x01\x00\x00\xff\xff" + b"short",  # header length beyond the message
        b"cam1\x00\x01\x00\x00\x00\x03\xc1\xc1\xc1",  # invalid msgpack
        b"cam1\x00\x01\x00\x00\x00\x01\x05",  # msgpack int, not a map
    ],
)
def test_malformed_frames_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        protocol.decode_frame(data)


def test_peek_frame_parses_the_structure_without_validating_fields():
    topic, m, size = protocol.peek_frame(protocol.encode_frame(header(), b"px"))
    assert topic == b"site1/cam1"
    assert (m["stream"], m["session"], m["seq"], size) == ("site1/cam1", 123456789, 42, 2)
    topic, m, size = protocol.peek_frame(
        raw_message(b"other", 1, header().to_map() | {"seq": "7"}, b"")
    )
    assert (topic, m["seq"], size) == (b"other", "7", 0)  # decode_frame's job, not peek's


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"no terminator at all", "no_terminator"),
        (b"x" * 201 + b"\x00\x01\x00\x00\x00\x01\x80", "no_terminator"),  # topic too long
        (b"cam1\x00", "truncated"),
        (b"cam1\x00\x01\x00\x00\xff\xff" + b"short", "truncated"),
        (b"cam1\x00\x02\x00\x00\x00\x01\x80", "version"),
        (b"cam1\x00\x01\x00\x00\x00\x03\xc1\xc1\xc1", "header"),
        (b"cam1\x00\x01\x00\x00\x00\x01\x05", "header"),
    ],
)
def test_peek_frame_rejects_bad_structure_like_decode_frame(data, kind):
    for parse in (protocol.peek_frame, protocol.decode_frame):
        with pytest.raises(ProtocolError) as info:
            parse(data)
        assert info.value.kind == kind, parse.__name__


@pytest.mark.parametrize(
    "change",
    [
        {"seq": -1},
        {"seq": "7"},
        {"encoding": "png"},
        {"shape": [480]},
        {"shape": [0, 640, 3]},
        {"shape": "480x640"},
        {"dtype": "object"},
        {"stream": 5},
        {"v": "1.0"},
    ],
)
def test_invalid_header_fields_raise_protocol_error(change):
    m = header().to_map() | change
    with pytest.raises(ProtocolError):
        protocol.decode_frame(raw_message(b"site1/cam1", 1, m))


def test_missing_header_key_named_in_error():
    m = header().to_map()
    del m["t_capture"]
    with pytest.raises(ProtocolError, match="t_capture"):
        protocol.decode_frame(raw_message(b"site1/cam1", 1, m))


def test_topic_must_match_header_stream():
    with pytest.raises(ProtocolError, match="does not match"):
        protocol.decode_frame(raw_message(b"other", 1, header().to_map()))


def test_protocol_error_carries_data():
    with pytest.raises(ProtocolError) as info:
        protocol.decode_frame(b"garbage without end")
    assert info.value.data.startswith(b"garbage")


def test_result_round_trip_and_age():
    r = ResultMessage(
        consumer="c1",
        stream="cam1",
        session=9,
        seq=3,
        t_capture=1_000,
        t_start=41_000_000,
        duration_ns=5_000,
        result={"mean": 12.5, "boxes": []},
    )
    back = protocol.decode_result(protocol.encode_result(r))
    assert back == r
    assert back.age_ns == 41_000_000 - 1_000


def test_result_encodes_numpy_values():
    np = pytest.importorskip("numpy")
    r = ResultMessage(
        consumer="c",
        stream="s",
        session=1,
        seq=1,
        t_capture=1,
        t_start=2,
        duration_ns=1,
        result={"m": np.float32(1.5), "a": np.arange(3)},
    )
    assert protocol.decode_result(protocol.encode_result(r)).result == {"m": 1.5, "a": [0, 1, 2]}


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": [1, 0], "consumer": "c"}),
        msgpack.packb(
            {
                "v": [1, 0],
                "consumer": "c",
                "stream": "s",
                "session": 1,
                "seq": 1,
                "t_capture": 1,
                "t_start": 1,
                "duration_ns": 1,
                "result": "text",
            }
        ),
    ],
)
def test_bad_results_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        protocol.decode_result(data)


def test_control_request_reply_round_trip():
    req = control_protocol.decode_request(control_protocol.encode_request("streams"))
    assert req["op"] == "streams"
    reply = control_protocol.decode_reply(control_protocol.encode_reply(streams=[]))
    assert reply["ok"] is True and reply["streams"] == []
    err = control_protocol.decode_reply(control_protocol.encode_error_reply("nope"))
    assert err == {"v": [1, 0], "ok": False, "error": "nope"}


def test_unknown_control_op_rejected():
    with pytest.raises(ProtocolError, match="unknown control op"):
        control_protocol.decode_request(control_protocol.encode_request("reboot"))


def test_spec_example_matches_the_encoder():
    """The hex dump in docs/protocol.md is what the encoder produces, byte for byte."""
    import pathlib
    import re

    spec = (pathlib.Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    dump = spec.split("Example: the complete message", 1)[1].split("```")[1]
    data = bytes.fromhex(" ".join(re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)", dump, re.M)))
    h = FrameHeader(
        stream="cam1",
        session=7,
        seq=0,
        t_capture=1_700_000_000_000_000_000,
        t_publish=1_700_000_000_001_000_000,
        encoding="raw",
        shape=(2, 2),
        dtype="uint8",
        pixfmt="gray8",
    )
    assert data == protocol.encode_frame(h, bytes([0, 64, 128, 255]))
    assert protocol.decode_frame(data).header == h
