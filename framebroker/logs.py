"""Logging set-up for every command: one line per event, to stderr.

Two formats, one set of fields: ``text`` (``12:00:01 INFO    framebroker.broker: ...``)
for people, ``json`` (one object per line: ``ts``, ``level``, ``logger``, ``msg``, and
``exc`` when there is a traceback) for log collectors. The level comes from
``--log-level`` or ``FRAMEBROKER_LOG_LEVEL``, the format from ``--log-format`` or
``FRAMEBROKER_LOG_FORMAT`` (the flag wins).
"""

from __future__ import annotations

import json
import logging
import os
import time

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    name = (level or os.environ.get("FRAMEBROKER_LOG_LEVEL") or "INFO").upper()
    kind = (fmt or os.environ.get("FRAMEBROKER_LOG_FORMAT") or "text").lower()
    handler = logging.StreamHandler()
    if kind == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S"))
    logging.basicConfig(level=getattr(logging, name, logging.INFO), handlers=[handler])
