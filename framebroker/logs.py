"""Logging set-up for every command: one line per event, to stderr."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    name = (level or os.environ.get("FRAMEBROKER_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, name, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
