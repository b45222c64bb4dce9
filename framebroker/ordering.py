"""Which of two frames of one stream is newer: the one rule every receiver keeps.

A frame is placed by (session, seq): ``session`` is random per producer start and ``seq``
counts from 0 within it. Within one session a higher seq is newer; a frame of *another*
session is newer whatever its seq, because sessions are random (not ordered) and a new
one means the producer restarted (or the stream moved to another broker, which re-sends
frames of the session it has). A frame that is not newer than the newest one seen is a
repeat: the broker's last-value cache re-sends its newest frame whenever a subscription
arrives, so every receiver (a consumer's slots, the viewer) refuses those.

Pure: two pairs of integers in, a boolean out.
"""

from __future__ import annotations


def is_newer(session: int, seq: int, last_session: int, last_seq: int) -> bool:
    """Whether frame (``session``, ``seq``) is newer than (``last_session``, ``last_seq``)."""
    return session != last_session or seq > last_seq
