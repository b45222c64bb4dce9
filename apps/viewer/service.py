"""The viewer's HTTP service (aiohttp): pages, the stream list, live frames.

The lifecycle is :class:`framebroker.service.Service`'s: ``start()`` connects to the
broker and binds the HTTP port (``http_endpoint`` is then the real URL), ``run()`` serves
until ``stop()``/``close()``. The viewer owns one event loop: ``start()`` runs it until
bound, ``run()`` runs it until stopped (in the thread that calls ``run()``), ``close()``
runs it to clean up and closes it. Only the control request and the SQLite reads go to
the loop's default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from framebroker import control
from framebroker.broker.set_view import merge_streams
from framebroker.errors import FrameBrokerError, TransportError
from framebroker.service import Service
from framebroker.sink.postgres import redact

from .config import ViewerConfig
from .hub import FrameHub, jpeg_of
from .playback import RecordingRoutes
from .recordings import RecordingLibrary
from .results import ResultsReader

log = logging.getLogger("framebroker.viewer")

STREAMS_EVERY_S = 1.0  # how often the broker's stream list is refreshed
RESULTS_EVERY_S = 0.25  # how often the results database is read
WAIT_S = 5.0  # a client's wait for a newer frame before it hears "no frame yet"


class Viewer(Service):
    thread_name = "framebroker-viewer"

    def __init__(self, config: ViewerConfig) -> None:
        super().__init__()
        self.config = config
        self.hub = FrameHub(
            config.publish,
            config.subscriptions,
            config.security,
            work=None if config.plain_sub else config.work,
            streams=config.streams,
        )
        self.results = ResultsReader(config.db) if config.db else None
        self.recordings = (
            RecordingLibrary(config.recordings, config.quality) if config.recordings else None
        )
        self.broker_streams: list[dict[str, Any]] = []
        self.broker_error: str | None = "not asked yet"
        self.clients = 0  # open WebSocket and MJPEG connections
        self.frames_sent = 0
        self.http_endpoint = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._awake: asyncio.Event | None = None  # set (on the loop) by stop()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def _open(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._bind())

    def _serve(self) -> None:
        assert self._loop is not None
        self._loop.run_until_complete(self._until_stopped())

    def _wake(self) -> None:
        loop, awake = self._loop, self._awake
        if loop is not None and awake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(awake.set)

    def _release(self) -> None:
        loop = self._loop
        if loop is None:
            return  # nothing opened (the results database opens on the first read)
        try:
            loop.run_until_complete(self._cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
        log.info("viewer stopped: %d frames sent to browsers", self.frames_sent)

    async def _bind(self) -> None:
        await self.hub.start()
        self._runner = web.AppRunner(self.app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise TransportError(f"viewer: cannot serve HTTP on {where}: {exc}") from exc
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.config.port
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        self.http_endpoint = f"http://{host}:{port}/"
        log.info(
            "viewer on %s (frames from %s, streams from %s, results from %s)",
            self.http_endpoint,
            self.config.publish,
            self.config.control,
            redact(self.config.db) if self.config.db else "nowhere (no --db)",
        )
        if self.recordings is not None:
            log.info("recordings of %s at %srecordings", self.recordings.root, self.http_endpoint)
        log.info("viewer security: %s", self.config.security.describe("broker"))

    async def _until_stopped(self) -> None:
        self._awake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._refresh_streams()),
            asyncio.create_task(self._refresh_results()),
        ]
        if not self.stopping:  # a stop() before _awake existed woke nobody
            await self._awake.wait()

    async def _cleanup(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.hub.close()
        if self.results is not None:
            self.results.close()

    async def _refresh_streams(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                reply = await loop.run_in_executor(None, self._ask_streams)
                if reply.get("ok"):
                    self.broker_streams = list(reply.get("streams", []))
                    self.broker_error = None
                else:
                    self.broker_error = str(reply.get("error"))
            except FrameBrokerError as exc:
                self.broker_error = str(exc)
            await asyncio.sleep(STREAMS_EVERY_S)

    def _ask_streams(self) -> dict[str, Any]:
        """The streams of the broker, or of every broker of a set (each with its broker)."""
        answers = control.request_all(
            self.config.control, "streams", timeout=1.0, security=self.config.security
        )
        if len(answers) == 1:
            return answers[0].reply or {"ok": False, "error": answers[0].error}
        if not any(a.up for a in answers):
            return {"ok": False, "error": "; ".join(str(a.error) for a in answers)}
        return {"ok": True, "streams": merge_streams(answers)}

    async def _refresh_results(self) -> None:
        if self.results is None:
            return
        loop = asyncio.get_running_loop()
        reader = self.results
        while True:
            await loop.run_in_executor(None, reader.poll)
            await asyncio.sleep(RESULTS_EVERY_S)

    # --- the web app ----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._static("index.html")),
                web.get("/view", self._static("view.html")),
                web.get("/viewer.js", self._static("viewer.js")),
                web.get("/api/streams", self._api_streams),
                web.get("/snapshot.jpg", self._snapshot),
                web.get("/stream.mjpg", self._mjpeg),
                web.get("/ws", self._websocket),
            ]
        )
        if self.recordings is not None:
            app.add_routes(RecordingRoutes(self.recordings, self._static).routes())
        return app

    def _static(self, name: str) -> Any:
        text = (resources.files("framebroker.viewer") / "static" / name).read_bytes()
        kind = {"html": "text/html", "js": "text/javascript"}[name.rsplit(".", 1)[1]]

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=text, content_type=kind, charset="utf-8")

        return handler

    def stream_list(self) -> list[dict[str, Any]]:
        """The broker's streams merged with what the viewer receives and the results."""
        now = time.time_ns()
        known = {s.get("stream"): dict(s) for s in self.broker_streams}
        for name in self.hub.frames:
            known.setdefault(name, {"stream": name, "state": "unknown"})
        out = []
        for name in sorted(k for k in known if isinstance(k, str)):
            entry = known[name]
            frame = self.hub.frames.get(name)
            if frame is not None:
                h = frame.header
                entry.setdefault("shape", list(h.shape))
                entry.setdefault("encoding", h.encoding)
                entry["seq"] = h.seq
                entry["frame_age_s"] = round((now - h.t_capture) / 1e9, 3)
            entry["viewer_frames"] = self.hub.received_by_stream.get(name, 0)
            entry["results"] = self.results.for_stream(name) if self.results else []
            out.append(entry)
        return out

    async def _api_streams(self, request: web.Request) -> web.Response:
        body = {
            "streams": self.stream_list(),
            "broker_error": self.broker_error,
            "recordings": self.recordings is not None,
        }
        return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))

    def _stream_param(self, request: web.Request) -> str:
        stream = request.query.get("stream", "")
        if not stream:
            raise web.HTTPBadRequest(text="give ?stream=NAME")
        return stream

    async def _snapshot(self, request: web.Request) -> web.Response:
        stream = self._stream_param(request)
        frame = self.hub.frames.get(stream)
        data = jpeg_of(frame, self.config.quality) if frame else None
        if data is None:
            raise web.HTTPNotFound(text=f"no frame of stream {stream!r} yet")
        return web.Response(body=data, content_type="image/jpeg")

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        """MJPEG for players and <img>: each part is the newest frame once the last is
        written (aiohttp's write waits for the socket to drain), so nothing queues here."""
        stream = self._stream_param(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "multipart/x-mixed-replace; boundary=frame",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        self.clients += 1
        version = 0
        try:
            while not self.stopping:
                frame = await self.hub.wait_newer(stream, version, WAIT_S)
                if frame is None:
                    continue
                version = frame.version
                data = jpeg_of(frame, self.config.quality)
                if data is None:
                    continue
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                await response.write(head.encode() + data + b"\r\n")
                self.frames_sent += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.clients -= 1
        return response

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Frames by credit: the browser sends "next", gets one JSON text message (the
        header and the stream's latest results) then one binary message (the JPEG)."""
        stream = self._stream_param(request)
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        self.clients += 1
        version = 0
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT or msg.data != "next":
                    continue
                frame = None
                while frame is None and not ws.closed and not self.stopping:
                    frame = await self.hub.wait_newer(stream, version, WAIT_S)
                    data = jpeg_of(frame, self.config.quality) if frame else None
                    if frame is not None and data is None:
                        version, frame = frame.version, None
                if frame is None or data is None:
                    break
                version = frame.version
                await ws.send_str(json.dumps(self._frame_info(frame), default=str))
                await ws.send_bytes(data)
                self.frames_sent += 1
        finally:
            self.clients -= 1
        return ws

    def _frame_info(self, frame: Any) -> dict[str, Any]:
        h = frame.header
        return {
            "stream": h.stream,
            "seq": h.seq,
            "shape": list(h.shape),
            "encoding": h.encoding,
            "age_ms": round((time.time_ns() - h.t_capture) / 1e6, 1),
            "results": self.results.for_stream(h.stream) if self.results else [],
        }
