"""Property tests of the protocol decoders (hypothesis): hostile bytes raise ProtocolError only.

Every decoder a socket feeds (decode_frame, peek_frame, decode_result, decode_request,
decode_reply, decode_ack) gets arbitrary bytes and structured-but-wrong msgpack (valid
messages with fields deleted, retyped, replaced by huge integers, nested junk or strings
that are not UTF-8) and must either raise ProtocolError or return a well-formed value;
valid messages round-trip. ``FRAMEBROKER_FUZZ_EXAMPLES`` sets the examples per property
(default 300).
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framebroker import control_protocol, protocol
from framebroker.errors import ProtocolError
from framebroker.protocol import FrameHeader, ResultMessage

EXAMPLES = int(os.environ.get("FRAMEBROKER_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies: what a hostile peer can put into msgpack ---------------------------------

MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
HUGE_INTS = st.sampled_from([2**64 - 1, 2**63, 2**32, -(2**63), -1, 0, (1 << 20), (1 << 20) - 1])
SCALARS = (
    st.none()
    | st.booleans()
    | MSGPACK_INTS
    | HUGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
KEYS = st.text(max_size=10) | st.binary(max_size=6) | st.integers(-5, 5) | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NESTED_JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=25,
)
COMPARABLE = st.recursive(  # values that equal themselves after a round trip (no NaN)
    st.none() | st.booleans() | MSGPACK_INTS | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
STREAMS = st.from_regex(r"[A-Za-z0-9_.\-][A-Za-z0-9_.\-/]{0,30}", fullmatch=True)
UINT64 = st.integers(min_value=0, max_value=2**64 - 1)


def pack(value: Any, *, utf8: bool = True) -> bytes:
    """msgpack bytes; ``utf8=False`` packs bytes as *str* (strings that are not UTF-8)."""
    return msgpack.packb(value, use_bin_type=utf8)


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A valid map with some fields deleted, retyped or added, packed (maybe not UTF-8)."""
    m = dict(valid)
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(sorted(m) or ["v"]) | st.text(max_size=8))
        action = draw(st.sampled_from(["delete", "value", "junk", "huge", "bytes-as-str"]))
        if action == "delete":
            m.pop(key, None)
        elif action == "value":
            m[key] = draw(VALUES)
        elif action == "junk":
            m[key] = draw(NESTED_JUNK)
        elif action == "huge":
            m[key] = draw(HUGE_INTS | st.lists(HUGE_INTS, max_size=4))
        else:
            m[key] = draw(st.binary(max_size=12))
    utf8 = draw(st.booleans())  # False: every bytes value becomes a (maybe invalid) str
    try:
        return pack(m, utf8=utf8)
    except (TypeError, ValueError, OverflowError):
        return pack({"v": [1, 0]})


def valid_header_map() -> dict[str, Any]:
    return FrameHeader(
        stream="cam1",
        session=7,
        seq=3,
        t_capture=1_700_000_000_000_000_000,
        t_publish=1_700_000_000_000_000_001,
        encoding="raw",
        shape=(2, 2),
        dtype="uint8",
        pixfmt="gray8",
        meta={"k": "v"},
    ).to_map()


def valid_result_map() -> dict[str, Any]:
    return ResultMessage("c1", "cam1", 7, 3, 1, 2, 3, {"mean": 1.5}, id=9).to_map()


def frame_bytes(topic: bytes, major: int, header: bytes, payload: bytes, hlen: int | None) -> bytes:
    length = len(header) if hlen is None else hlen
    return topic + b"\x00" + bytes([major]) + struct.pack(">I", length) + header + payload


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Frame messages wrong in any of their parts: topic, version, length, header, payload."""
    topic = draw(
        st.sampled_from([b"cam1", b"", b"\xff\xfe"])
        | st.binary(max_size=12)
        | st.integers(195, 210).map(lambda n: b"x" * n)  # around the 200-byte limit
    )
    major = draw(st.sampled_from([1, 1, 1, 0, 2, 255]))
    header = draw(mutated(valid_header_map()) | st.binary(max_size=40))
    hlen = draw(st.none() | st.none() | st.integers(0, 2**32 - 1))
    payload = draw(st.sampled_from([b"", bytes(4), bytes(5), b"\xff\xd8"]) | st.binary(max_size=16))
    data = frame_bytes(topic, major, header, payload, hlen)
    cut = draw(st.none() | st.integers(0, len(data)))
    return data if cut is None else data[:cut]


# --- properties: only ProtocolError, whatever comes in -------------------------------------

DECODERS = {
    "decode_frame": protocol.decode_frame,
    "peek_frame": protocol.peek_frame,
    "decode_result": protocol.decode_result,
    "decode_request": control_protocol.decode_request,
    "decode_reply": control_protocol.decode_reply,
    "decode_ack": protocol.decode_ack,
}


def only_protocol_errors(decode: Any, data: bytes) -> Any:
    """Decode ``data``: a value, or None after a ProtocolError; anything else fails."""
    try:
        return decode(data)
    except ProtocolError as exc:
        assert exc.kind and isinstance(exc.reason, str)
        return None


@pytest.mark.parametrize("name", sorted(DECODERS))
@fuzz
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_error(name, data):
    only_protocol_errors(DECODERS[name], data)
    only_protocol_errors(DECODERS[name], memoryview(data))


@pytest.mark.parametrize("name", sorted(DECODERS))
@fuzz
@given(value=NESTED_JUNK, utf8=st.booleans())
def test_any_msgpack_value_raises_only_protocol_error(name, value, utf8):
    try:
        data = pack(value, utf8=utf8)
    except (TypeError, ValueError, OverflowError):
        return
    decoded = only_protocol_errors(DECODERS[name], data)
    if name == "decode_frame":
        assert decoded is None  # a bare msgpack value has no topic terminator at offset > 0


@fuzz
@given(data=hostile_frames())
def test_hostile_frames_raise_only_protocol_error_and_peek_agrees(data):
    try:
        message = protocol.decode_frame(data)
    except ProtocolError as exc:
        try:
            protocol.peek_frame(data)
        except ProtocolError as peeked:
            assert peeked.kind == exc.kind  # the cheap check reports as the full one
        return
    topic, header, size = protocol.peek_frame(data)
    h = message.header
    assert topic == h.stream.encode() and header["stream"] == h.stream
    assert size == len(message.payload)
    protocol.validate_stream_id(h.stream)
    assert all(isinstance(d, int) and 0 < d <= protocol.MAX_DIMENSION for d in h.shape)
    if h.encoding == "raw":
        assert size == math.prod(h.shape) * protocol.SAMPLE_SIZE[h.dtype]
    else:
        assert bytes(message.payload[:2]) == b"\xff\xd8"


@fuzz
@given(data=mutated(valid_header_map()), payload=st.binary(max_size=8))
def test_header_with_wrong_fields_raises_only_protocol_error(data, payload):
    message = only_protocol_errors(
        protocol.decode_frame, frame_bytes(b"cam1", 1, data, payload, None)
    )
    if message is not None:
        assert isinstance(message.header.session, int) and isinstance(message.header.seq, int)
        assert message.header.encoding in protocol.ENCODINGS


@fuzz
@given(data=mutated(valid_result_map()))
def test_result_with_wrong_fields_raises_only_protocol_error(data):
    result = only_protocol_errors(protocol.decode_result, data)
    if result is not None:
        assert isinstance(result.consumer, str) and isinstance(result.result, dict)
        assert all(isinstance(getattr(result, f), int) for f in ("session", "seq", "t_start"))
        assert result.id is None or (isinstance(result.id, int) and result.id >= 0)


@fuzz
@given(data=mutated({"v": [1, 0], "op": "streams"}))
def test_request_with_wrong_fields_raises_only_protocol_error(data):
    request = only_protocol_errors(control_protocol.decode_request, data)
    if request is not None:
        assert request["op"] in control_protocol.CONTROL_OPS


@fuzz
@given(data=mutated({"v": [1, 1], "ok": True, "ack": [1, 2], "error": "x"}))
def test_reply_and_ack_with_wrong_fields_raise_only_protocol_error(data):
    reply = only_protocol_errors(control_protocol.decode_reply, data)
    if reply is not None:
        assert isinstance(reply["ok"], bool)
    ids = only_protocol_errors(protocol.decode_ack, data)
    if ids is not None:
        assert all(isinstance(i, int) and i >= 0 for i in ids)


# --- valid messages round-trip ---------------------------------------------------------------


@st.composite
def headers(draw: st.DrawFn) -> FrameHeader:
    encoding = draw(st.sampled_from(protocol.ENCODINGS))
    shape = draw(st.lists(st.integers(1, 6), min_size=2, max_size=3).map(tuple))
    return FrameHeader(
        stream=draw(STREAMS),
        session=draw(UINT64),
        seq=draw(UINT64),
        t_capture=draw(UINT64),
        t_publish=draw(UINT64),
        encoding=encoding,
        shape=shape,
        dtype=draw(st.sampled_from(protocol.DTYPES)),
        pixfmt=draw(st.sampled_from(protocol.PIXEL_FORMATS) | st.text(max_size=10)),
        meta=draw(st.dictionaries(st.text(max_size=8), COMPARABLE, max_size=3)),
        version=(1, draw(st.integers(0, 255))),
    )


@fuzz
@given(header=headers(), data=st.data())
def test_valid_frames_round_trip(header, data):
    size = protocol.payload_size(header)
    payload = (
        data.draw(st.binary(min_size=size, max_size=size))
        if size is not None
        else b"\xff\xd8" + data.draw(st.binary(max_size=40))
    )
    wire = protocol.encode_frame(header, payload)
    message = protocol.decode_frame(wire)
    assert message.header == header and bytes(message.payload) == payload
    topic, peeked, length = protocol.peek_frame(wire)
    assert (topic, peeked["seq"], length) == (header.stream.encode(), header.seq, len(payload))
    if size is not None:  # one byte more or less: a header that lies about the payload
        for lie in (payload + b"\x00", payload[:-1]):
            with pytest.raises(ProtocolError) as info:
                protocol.decode_frame(protocol.encode_frame(header, lie))
            assert info.value.kind == "size_mismatch"


@fuzz
@given(
    result=st.builds(
        ResultMessage,
        consumer=st.text(max_size=20),
        stream=st.text(max_size=20),
        session=UINT64,
        seq=UINT64,
        t_capture=UINT64,
        t_start=UINT64,
        duration_ns=UINT64,
        result=st.dictionaries(st.text(max_size=8), COMPARABLE, max_size=4),
        version=st.tuples(st.just(1), st.integers(0, 9)),
        id=st.none() | UINT64,
    )
)
def test_valid_results_round_trip(result):
    assert protocol.decode_result(protocol.encode_result(result)) == result


@fuzz
@given(ids=st.lists(UINT64, max_size=20), op=st.sampled_from(control_protocol.CONTROL_OPS))
def test_valid_control_messages_and_acks_round_trip(ids, op):
    assert protocol.decode_ack(protocol.encode_ack(ids)) == ids
    assert control_protocol.decode_request(control_protocol.encode_request(op))["op"] == op
    assert control_protocol.decode_reply(control_protocol.encode_reply(n=len(ids)))["n"] == len(ids)
    assert control_protocol.decode_reply(control_protocol.encode_error_reply("no"))["ok"] is False
