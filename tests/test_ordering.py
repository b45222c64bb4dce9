"""The one "is this frame newer" rule (framebroker.ordering), and that both receivers keep it."""

from __future__ import annotations

import pytest

from framebroker.consumers.slots import LatestSlots, Offer
from framebroker.ordering import is_newer
from framebroker.testing import make_frame
from framebroker.viewer.hub import FrameHub


@pytest.mark.parametrize(
    ("session", "seq", "last_session", "last_seq", "newer"),
    [
        (7, 5, 7, 4, True),  # the next frame of the session
        (7, 5, 7, 5, False),  # the same frame again (last-value cache re-send)
        (7, 3, 7, 5, False),  # an older frame of the session
        (9, 0, 7, 5, True),  # a new session (producer restarted) starts again at 0
        (3, 0, 7, 5, True),  # sessions are random, not ordered: a smaller one is new too
    ],
)
def test_is_newer(session, seq, last_session, last_seq, newer):
    assert is_newer(session, seq, last_session, last_seq) is newer


def offers(seqs: list[tuple[int, int]]) -> tuple[list[bool], list[bool]]:
    """What the consumer's slots and the viewer's hub each accepted, frame by frame."""
    slots, hub = LatestSlots(), FrameHub("tcp://127.0.0.1:1")
    by_slots, by_hub = [], []
    for session, seq in seqs:
        frame = make_frame("cam1", seq=seq, session=session)
        by_slots.append(slots.offer(frame) is not Offer.DUPLICATE)
        before = hub.received_by_stream.get("cam1", 0)
        hub.offer(frame.header, bytes(frame.payload))
        by_hub.append(hub.received_by_stream["cam1"] > before)
    return by_slots, by_hub


def test_consumer_and_viewer_accept_the_same_frames():
    sequence = [(7, 0), (7, 1), (7, 1), (7, 0), (7, 3), (2, 0), (2, 0), (2, 1), (7, 1)]
    by_slots, by_hub = offers(sequence)
    assert by_slots == by_hub == [True, True, False, False, True, True, False, True, True]
