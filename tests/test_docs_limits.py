"""One truth for limits: the numbers in docs/protocol.md's Limits tables are the code's.

Each default is read from the code (the config dataclasses and the protocol modules),
written the way the docs write it (64 MiB, 10,000, 256 B) and looked up in the row of the
table that names it, so a default that changes without its documentation fails here.
The sink's ``--help`` shows the same value as the docs (a 16 MiB / 1 MiB mix-up once
stood in the spec). README.md states no limit; if it ever does, add it here.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from framebroker.broker import BrokerConfig
from framebroker.broker.limits import CACHE_SCANS_PER_S, BrokerLimits
from framebroker.control_protocol import MAX_CONTROL_PARTS, MAX_CONTROL_SIZE
from framebroker.options import add_options
from framebroker.protocol import MAX_DIMENSION, MAX_HEADER_BYTES, MAX_STREAM_ID_BYTES
from framebroker.sink import SinkConfig
from tests.conftest import ROOT

SPEC = ROOT / "docs" / "protocol.md"


def default(cls: type, name: str) -> object:
    (f,) = [f for f in fields(cls) if f.name == name]
    return f.default


def size(n: int) -> str:
    """The docs' way of writing a byte size: 64 MiB, 1 GiB, 64 KiB, 256 B."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def count(n: float) -> str:
    """The docs' way of writing a count: 10,000; 4; 100."""
    return f"{int(n):,}"


def limits_rows() -> list[list[str]]:
    """The cells of every table row of the Limits section."""
    text = SPEC.read_text()
    section = text.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]


def row(*needles: str) -> list[str]:
    """The one row of the Limits tables whose cells contain every needle."""
    found = [r for r in limits_rows() if all(any(n in c for c in r) for n in needles)]
    assert len(found) == 1, f"{len(found)} rows of the Limits tables name {needles}"
    return found[0]


def size_row(what: str) -> str:
    """The limit column of the size table's row for ``what`` (its first cell)."""
    (found,) = [r[1] for r in limits_rows() if r[0] == what]
    return found


def reference_defaults() -> list[tuple[tuple[str, ...], str]]:
    """(what identifies the row, its default column) for the table of reference services."""
    b, lim = BrokerConfig, BrokerLimits
    groups, workers = default(b, "max_groups"), default(b, "max_workers")
    return [
        (("broker ingest (5555)",), size(default(b, "max_message_size"))),
        (("broker publish (5556)",), size(default(lim, "max_subscription_size"))),
        (("broker control (5558)",), size(default(lim, "max_control_size"))),
        (("frames in one message",), count(MAX_CONTROL_PARTS)),
        (("broker work (5560)",), size(default(lim, "max_control_size"))),
        (("`--max-groups` groups,",), f"{count(groups)}, {count(workers)}"),
        (("--max-streams",), count(default(lim, "max_streams"))),
        (("--max-subscriptions",), count(default(lim, "max_subscriptions"))),
        (("--cache-budget",), size(default(lim, "cache_budget"))),
        (("--cache-send-rate",), count(default(lim, "cache_send_rate"))),
        (("cache lookups",), count(CACHE_SCANS_PER_S)),
        (("sink results (5557)",), size(default(SinkConfig, "max_message_size"))),
        (("sink control (5561)",), size(MAX_CONTROL_SIZE)),
        (("results waiting",), count(default(SinkConfig, "max_pending"))),
    ]


@pytest.mark.parametrize(("needles", "value"), reference_defaults())
def test_reference_service_defaults_in_the_spec_are_the_codes(needles, value):
    assert row(*needles)[2] == value, f"docs/protocol.md Limits row {needles}: not {value}"


def test_the_size_table_agrees_with_the_code():
    assert f"default {size(default(SinkConfig, 'max_message_size'))})" in size_row("result message")
    frame = f"default {size(default(BrokerConfig, 'max_message_size'))})"
    assert frame in size_row("whole frame message")
    assert size_row("control request").startswith(size(MAX_CONTROL_SIZE))
    assert f"1..{MAX_STREAM_ID_BYTES} bytes" in size_row("stream id")
    assert f"{MAX_HEADER_BYTES:,} bytes" in size_row("frame header (`H`)")
    assert size_row("each `shape` entry") == f"1..{MAX_DIMENSION:,}"
    work = size_row("work request (v1.2)")
    groups, workers = default(BrokerConfig, "max_groups"), default(BrokerConfig, "max_workers")
    assert f"({groups})" in work and f"({workers})" in work


def test_sink_help_shows_the_documented_result_size():
    parser = argparse.ArgumentParser()
    add_options(parser, SinkConfig, only=("max_message_size",))
    documented = row("sink results (5557)")[2]  # "1 MiB"
    number, unit = documented.split()
    assert f"(default: {number}{unit[0]})" in " ".join(parser.format_help().split())


def test_every_bad_input_row_is_there_once():
    """The bad-input table lists each (where, input) once: no two rows contradict."""
    text = SPEC.read_text()
    section = text.split("\n## What each service does with bad input\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [
        tuple(c.strip() for c in line.strip().strip("|").split("|")[:2])
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ][1:]
    assert len(rows) == len(set(rows)), "a (where, bad input) row appears twice"
    payload = [r for r in rows if "payload fails its check" in r[1]]
    assert len(payload) == 1, "one rule for a payload that fails its check"
