"""Receiving one ZeroMQ message of any number of parts without holding all of them.

``recv_multipart`` keeps every part of a message: a peer could send one message of a
million tiny parts (``ZMQ_MAXMSGSIZE`` bounds each part, not their number). The broker's
control port and the sink receive with :func:`recv_parts` instead, which keeps the first
``limit`` parts, counts the rest and lets them go.
"""

from __future__ import annotations

from typing import Any

import zmq


def recv_parts(
    sock: zmq.Socket[Any], limit: int, flags: int = zmq.NOBLOCK
) -> tuple[list[bytes], int]:
    """One whole message: (its first ``limit`` parts, its number of parts).

    ``flags`` apply to the first part (``zmq.NOBLOCK``: raise ``zmq.Again`` when there is
    no message); libzmq delivers a message's parts together, so the rest never block.
    """
    parts = [sock.recv(flags)]
    total = 1
    while sock.get(zmq.RCVMORE):  # not ``sock.rcvmore``: its attribute lookup is 2x slower
        part = sock.recv()
        total += 1
        if total <= limit:
            parts.append(part)
    return parts, total
