"""Conformance vectors: the committed files are current, and the Python decoder passes them.

Each vector's expected outcome (tests/vectors/NAME.json) is canonical JSON text; the
decoder's outcome is rendered the same way (tests/vectors/README.md) and compared as text,
exactly as the C and JavaScript checkers do (tests/test_clients.py).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from framebroker import control_protocol, protocol, work_protocol
from framebroker.capabilities import PROTOCOL_VERSION, capabilities
from framebroker.errors import ProtocolError
from tests.vectors import generate

VECTORS = Path(__file__).parent / "vectors"
DOC = Path(__file__).parents[1] / "docs" / "protocol.md"
NAMES = sorted(p.stem for p in VECTORS.glob("*.bin"))
SAMPLE_SIZE = {"uint8": 1, "uint16": 2, "float32": 4}


def payload_check(header: protocol.FrameHeader, payload: bytes) -> str:
    """The receiver-side payload check of docs/protocol.md ("Payload")."""
    if header.encoding == "raw":
        size = SAMPLE_SIZE[header.dtype]
        for dim in header.shape:
            size *= dim
        return "ok" if len(payload) == size else "size_mismatch"
    return "ok" if payload[:2] == b"\xff\xd8" else "not_jpeg"


def frame_outcome(data: bytes) -> dict[str, Any]:
    msg = protocol.decode_frame(data, payload_check=False)  # the vectors report it apart
    h = msg.header
    header = {
        "v": list(h.version),
        "stream": h.stream,
        "session": h.session,
        "seq": h.seq,
        "t_capture": h.t_capture,
        "t_publish": h.t_publish,
        "encoding": h.encoding,
        "shape": list(h.shape),
        "dtype": h.dtype,
        "pixfmt": h.pixfmt,
        "meta": dict(h.meta),
    }
    payload = bytes(msg.payload)
    return {"header": header, "payload": payload.hex(), "payload_check": payload_check(h, payload)}


def result_outcome(data: bytes) -> dict[str, Any]:
    r = protocol.decode_result(data)
    return {
        "v": list(r.version),
        "consumer": r.consumer,
        "stream": r.stream,
        "session": r.session,
        "seq": r.seq,
        "t_capture": r.t_capture,
        "t_start": r.t_start,
        "duration_ns": r.duration_ns,
        "result": dict(r.result),
    }


def request_outcome(data: bytes) -> dict[str, Any]:
    request = control_protocol.decode_request(data)
    return {"op": request["op"], "v": request["v"]}


def work_outcome(data: bytes) -> dict[str, Any]:
    request = work_protocol.decode_work_request(data)
    return {"op": request.op, "v": list(request.version)}


def reply_outcome(data: bytes) -> dict[str, Any]:
    return control_protocol.decode_reply(data)


DECODERS = {
    "frame": frame_outcome,
    "result": result_outcome,
    "request": request_outcome,
    "reply": reply_outcome,
    "work": work_outcome,
}


def split_parts(data: bytes) -> list[bytes]:
    """A ``parts-`` vector's parts: each a uint32 big-endian length and its bytes."""
    parts, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        parts.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    assert at == len(data), "a parts- vector's lengths do not add up"
    return parts


def outcome(name: str, data: bytes) -> dict[str, Any]:
    if name.startswith("parts-"):  # a whole ZeroMQ message: one frame, or rejected
        parts = split_parts(data)
        return outcome(name[6:], parts[0]) if len(parts) == 1 else {"error": "multipart"}
    decode = DECODERS[name.split("-", 1)[0]]
    try:
        return {"decoded": decode(data)}
    except ProtocolError as exc:
        if name.startswith("frame-"):
            return {"error": exc.kind}
        # results and control messages have two kinds: "version" and everything else
        return {"error": "version" if exc.kind == "version" else "invalid"}


def test_committed_vectors_are_what_the_generator_makes():
    expected = generate.render(generate.build())
    on_disk = {p.name for p in VECTORS.iterdir() if p.suffix in (".bin", ".json")}
    assert on_disk == set(expected), "run python tests/vectors/generate.py and commit"
    for name, data in expected.items():
        assert (VECTORS / name).read_bytes() == data, f"{name} is stale: run generate.py"


def test_vectors_cover_every_outcome():
    index = json.loads((VECTORS / "index.json").read_text())
    assert [entry["name"] for entry in index] and len(index) == len(NAMES)
    outcomes = {(e["type"], e["expected"]) for e in index}
    for kind in ("valid", "no_terminator", "truncated", "version", "header", "topic_mismatch"):
        assert ("frame", kind) in outcomes
    for kind in ("valid", "invalid", "version"):
        for type_ in ("result", "request", "reply"):
            assert (type_, kind) in outcomes
    assert {("parts", "valid"), ("parts", "multipart")} <= outcomes
    assert {"reply-ping", "reply-ping-sink", "reply-ping-unknown-capability"} <= set(NAMES)
    checks = {
        json.loads((VECTORS / f"{n}.json").read_text())["decoded"]["payload_check"]
        for n in NAMES
        if n.startswith("frame-") and "decoded" in (VECTORS / f"{n}.json").read_text()
    }
    assert checks == {"ok", "size_mismatch", "not_jpeg"}


@pytest.mark.parametrize("name", NAMES)
def test_python_decoder_passes_vector(name):
    data = (VECTORS / f"{name}.bin").read_bytes()
    want = (VECTORS / f"{name}.json").read_text().rstrip("\n")
    assert generate.canonical(outcome(name, data)) == want


def test_ping_vectors_announce_what_this_build_serves():
    """The ping vectors name this build's protocol version and capabilities (one table:
    framebroker/capabilities.py), so a version bump cannot leave them behind."""
    for name, server in (("reply-ping", "broker"), ("reply-ping-sink", "sink")):
        reply = json.loads((VECTORS / f"{name}.json").read_text())["decoded"]
        assert reply["protocol"] == list(PROTOCOL_VERSION)
        assert reply["capabilities"] == capabilities(server)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("frame-")])
def test_decode_frame_rejects_a_payload_that_fails_its_check_with_that_kind(name):
    """decode_frame's own payload check names the vectors' payload_check outcome as kind."""
    data = (VECTORS / f"{name}.bin").read_bytes()
    want = json.loads((VECTORS / f"{name}.json").read_text())
    kind = want["error"] if "error" in want else want["decoded"]["payload_check"]
    if kind == "ok":
        protocol.decode_frame(data)
        return
    with pytest.raises(ProtocolError) as info:
        protocol.decode_frame(data)
    assert info.value.kind == kind


def _doc_dump(marker: str) -> bytes:
    block = DOC.read_text().split(marker, 1)[1].split("```")[1]
    return bytes.fromhex(" ".join(re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)", block, re.M)))


@pytest.mark.parametrize(
    ("marker", "vector"),
    [
        ("Example: the complete message", "frame-spec-example"),
        ("Example: the result of consumer", "result-spec-example"),
        ("Example: the `streams` request", "request-streams"),
        ("Example error reply", None),
    ],
)
def test_spec_hex_examples_are_vectors(marker, vector):
    data = _doc_dump(marker)
    if vector is None:
        reply = control_protocol.decode_reply(data)
        assert reply["ok"] is False
        assert data == control_protocol.encode_error_reply(reply["error"])
    else:
        assert data == (VECTORS / f"{vector}.bin").read_bytes()


def test_canonical_text_rules():
    c = generate.canonical
    assert c({"b": 1, "a": [True, None, -2]}) == '{"a":[true,null,-2],"b":1}'
    assert c(12.5) == "12.5" and c(1.0) == "1.0" and c(-1.0) == "-1.0" and c(0.0) == "0.0"
    assert (
        c(0.1) == "0.10000000000000001"
        and c(3e20) == "3e+20"
        and c(1.5e-7) == "1.4999999999999999e-07"
    )
    assert c('q"\\\n\x01é') == '"q\\"\\\\\\u000a\\u0001é"'
    assert c(b"\x00\xff") == '{"$bin":"00ff"}'
    assert c({"é": 1, "z": 2, "Z": 3}) == '{"Z":3,"z":2,"é":1}'
