"""ResultSender: results to the sink on PUSH, never blocking the frame loop.

PUSH blocks at its high-water mark, so results are sent with NOBLOCK: at most
``result_buffer`` results wait for a slow, absent or restarting sink, and the rest are
counted as dropped and logged (rate-limited) as "sink unreachable".
"""

from __future__ import annotations

import json
import logging
from typing import Any

import zmq

from consumers.stats import ConsumerStats
from framebroker.errors import ProcessorError
from framebroker.protocol import ResultMessage, encode_result
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.consumer")


class ResultSender:
    """Sends on a connected PUSH socket; owns no socket (the consumer closes it)."""

    def __init__(self, sock: zmq.Socket[Any], endpoint: str, stats: ConsumerStats) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._stats = stats
        self._log = RateLimitedLog(log, interval=5.0)

    def send(self, result: ResultMessage) -> bool:
        """Queue ``result`` for the sink; False (and counted) when it had to be dropped.

        Raises ProcessorError when the result is not made of msgpack-able plain types.
        """
        try:
            data = encode_result(result)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProcessorError(f"result is not made of plain types: {exc}") from None
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._stats.results_dropped += 1
            reason = "" if isinstance(exc, zmq.Again) else f" ({exc})"
            self._log.warning(
                "sink",
                "sink unreachable at %s%s, %d results dropped",
                self._endpoint,
                reason,
                self._stats.results_dropped,
            )
            return False
        self._stats.results_sent += 1
        return True


def print_json_line(result: ResultMessage) -> None:
    """Print a result as one JSON line on stdout (``--print``)."""
    print(json.dumps(result.to_map(), default=_plain, separators=(",", ":")), flush=True)


def _plain(obj: object) -> object:
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)
