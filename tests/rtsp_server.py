"""A real RTSP camera for tests: gst-rtsp-server serving a live test pattern at /test.

Run with Debian's own interpreter (it has ``gi``; the project's venv does not)::

    /usr/bin/python3 tests/rtsp_server.py PORT [WIDTHxHEIGHT@FPS]

It serves ``rtsp://127.0.0.1:PORT/test`` (H.264) and prints ``ready`` once it listens.
Killing it (SIGTERM, SIGKILL) is how the camera-loss tests make a camera disappear.
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    port = sys.argv[1]
    spec = sys.argv[2] if len(sys.argv) > 2 else "320x240@15"
    size, fps = spec.split("@")
    width, height = size.split("x")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
