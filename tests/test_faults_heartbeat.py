"""A producer that vanishes without closing (SIGSTOP: its TCP connection stays open) is
detected twice, each within a documented time:

- the broker's registry marks its stream ``stale`` after ``--stale-after`` seconds without
  a frame (2 s here; 3 s by default);
- ZMTP heartbeats drop the connection: every framebroker socket pings its peer every
  ``HEARTBEAT_IVL`` (1 s) and gives up after ``HEARTBEAT_TIMEOUT`` (3 s) without any
  traffic (framebroker/transport.py), which the broker counts in ``disconnects``
  (control ``stats``).

On SIGCONT the producer reconnects by itself and the stream is live again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from framebroker import control
from framebroker.errors import TransportError
from tests.conftest import free_port, wait_until

STALE_AFTER_S = 2.0
HEARTBEAT_IVL_S, HEARTBEAT_TIMEOUT_S = 1.0, 3.0  # make_socket(heartbeat_ms=1000)


def ask(endpoint: str, op: str) -> dict | None:
    try:
        return control.request(endpoint, op, timeout=1.0)
    except TransportError:
        return None


@pytest.mark.slow
def test_stopped_producer_is_detected_by_staleness_and_heartbeats(cli):
    ingest, publish, ctl = (free_port() for _ in range(3))
    endpoint = f"tcp://127.0.0.1:{ctl}"
    cli.start(
        *("broker", "--ingest", f"tcp://127.0.0.1:{ingest}", "--publish"),
        *(f"tcp://127.0.0.1:{publish}", "--control", endpoint),
        *("--stale-after", str(STALE_AFTER_S)),
    )
    producer = cli.start(
        "produce", "test:160x120@20", "--stream", "hb/cam", "--ingest", f"tcp://127.0.0.1:{ingest}"
    )

    def state() -> str | None:
        reply = ask(endpoint, "streams")
        found = [s for s in (reply or {}).get("streams", []) if s["stream"] == "hb/cam"]
        return found[0]["state"] if found else None

    def disconnects() -> int | None:
        reply = ask(endpoint, "stats")
        return None if reply is None else int(reply["disconnects"])

    wait_until(lambda: state() == "live", timeout=30)
    time.sleep(1.0)
    before = disconnects()
    assert before is not None

    stale_s = dropped_s = None
    os.kill(producer.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        deadline = stopped + 20
        while (stale_s is None or dropped_s is None) and time.monotonic() < deadline:
            now = time.monotonic() - stopped
            if stale_s is None and state() == "stale":
                stale_s = now
            if dropped_s is None and (disconnects() or 0) > before:
                dropped_s = now
            time.sleep(0.05)
    finally:
        os.kill(producer.pid, signal.SIGCONT)
    assert producer.poll() is None

    # Resumed: the producer's PUB reconnects and the stream is live again.
    resumed_at = time.monotonic()
    wait_until(lambda: state() == "live", timeout=15)
    resumed_s = time.monotonic() - resumed_at
    assert cli.stop(producer) == 0, cli.output(producer)

    print(
        f"\nSIGSTOP producer: stale after {stale_s or -1:.2f} s (--stale-after "
        f"{STALE_AFTER_S:g}), connection dropped by heartbeats after {dropped_s or -1:.2f} s "
        f"(ping every {HEARTBEAT_IVL_S:g} s, timeout {HEARTBEAT_TIMEOUT_S:g} s); live again "
        f"{resumed_s:.2f} s after SIGCONT"
    )
    assert stale_s is not None, "the stream never turned stale"
    assert dropped_s is not None, "heartbeats never dropped the stopped producer"
    # the stale check runs every 100 ms; the last frame may predate SIGSTOP by 50 ms
    assert STALE_AFTER_S - 0.2 <= stale_s <= STALE_AFTER_S + 1.5
    # a ping is due at most HEARTBEAT_IVL after the last traffic, then HEARTBEAT_TIMEOUT
    assert dropped_s <= HEARTBEAT_IVL_S + HEARTBEAT_TIMEOUT_S + 1.5
