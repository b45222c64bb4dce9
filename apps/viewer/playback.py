"""The viewer's recording pages and their HTTP API (``view --recordings DIR``).

::

    /recordings                          the list page: every recorded stream, its time range
    /recording?stream=S                  the playback page: a canvas, a time slider, play/pause
    /api/recordings                      JSON: the streams (times in ns since the epoch)
    /api/recording/frame.jpg?stream=S&offset_ns=N
                                         the JPEG on show N ns after the stream's first frame

The frame's place travels in response headers (``X-Frame-Seq``, ``X-Frame-Session``,
``X-Frame-Index``, ``X-Frame-Offset-Ns``, ``X-Frame-Next-Offset-Ns``: empty after the last
frame, ``X-Frame-T-Capture``), so a page plays the stream at its original timing by
asking, once a frame is drawn, for the frame at its own clock when the next one is due. A
slow page therefore skips frames and keeps the timing; nothing is pushed to it. Reads are
blocking file I/O and run in the loop's default executor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from framebroker.errors import RecordingError

from .recordings import RecordingLibrary

MAX_OFFSET_NS = 1 << 62


class RecordingRoutes:
    """The routes above, reading through one :class:`RecordingLibrary`."""

    def __init__(self, library: RecordingLibrary, static: Any) -> None:
        self.library = library
        self._static = static  # name -> aiohttp handler serving a file of static/

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/recordings", self._static("recordings.html")),
            web.get("/recording", self._static("recording.html")),
            web.get("/playback.js", self._static("playback.js")),
            web.get("/api/recordings", self._list),
            web.get("/api/recording/frame.jpg", self._frame),
        ]

    async def _list(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            streams = await loop.run_in_executor(None, self.library.streams)
        except RecordingError as exc:
            return web.json_response({"root": str(self.library.root), "error": str(exc)})
        return web.json_response({"root": str(self.library.root), "streams": streams})

    async def _frame(self, request: web.Request) -> web.Response:
        stream = request.query.get("stream", "")
        if not stream:
            raise web.HTTPBadRequest(text="give ?stream=NAME&offset_ns=N")
        try:
            offset = int(request.query.get("offset_ns", "0"))
        except ValueError:
            raise web.HTTPBadRequest(
                text="offset_ns is an integer (ns from the first frame)"
            ) from None
        if not -MAX_OFFSET_NS < offset < MAX_OFFSET_NS:
            raise web.HTTPBadRequest(text="offset_ns out of range")
        loop = asyncio.get_running_loop()
        try:
            still = await loop.run_in_executor(None, self.library.still, stream, offset)
        except RecordingError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        h = still.header
        headers = {
            "Cache-Control": "no-store",
            "X-Frame-Seq": str(h.seq),
            "X-Frame-Session": f"{h.session:x}",
            "X-Frame-Index": str(still.index),
            "X-Frame-T-Capture": str(h.t_capture),
            "X-Frame-Offset-Ns": str(still.offset_ns),
            "X-Frame-Next-Offset-Ns": ""
            if still.next_offset_ns is None
            else str(still.next_offset_ns),
            "X-Frame-Shape": "x".join(str(n) for n in h.shape),
            "X-Frame-Encoding": h.encoding,
        }
        return web.Response(body=still.jpeg, content_type="image/jpeg", headers=headers)
