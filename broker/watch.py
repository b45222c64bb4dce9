"""``framebroker streams --watch``: the stream table, redrawn in place (rich) until Ctrl-C."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from framebroker import control
from framebroker.errors import FrameBrokerError
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity

_STATE_STYLE = {"live": "green", "stale": "yellow"}


def render(
    streams: Sequence[Mapping[str, Any]], stats: Mapping[str, Any] | None, error: str | None
) -> Group:
    """The table of streams and one line of broker totals (drops, subscribers)."""
    table = Table(title="framebroker streams", title_justify="left", expand=False)
    for name, justify in (
        ("stream", "left"),
        ("state", "left"),
        ("size", "left"),
        ("encoding", "left"),
        ("fps", "right"),
        ("frames", "right"),
        ("MB", "right"),
        ("age", "right"),
        ("sessions", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in streams:
        shape = s.get("shape") or []
        state = str(s.get("state", "?"))
        fps = float(s.get("fps", -1.0))
        table.add_row(
            str(s.get("stream", "?")),
            Text(state, style=_STATE_STYLE.get(state, "red")),
            f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else "?",
            f"{s.get('encoding', '?')}/{s.get('pixfmt', '?')}",
            f"{fps:.1f}" if fps >= 0 else "-",
            str(s.get("frames", 0)),
            f"{int(s.get('bytes', 0)) / 1e6:.1f}",
            f"{float(s.get('age_s', 0.0)):.1f}s",
            str(s.get("sessions", 1)),
        )
    parts: list[Any] = [table]
    if stats:
        drops = stats.get("malformed", 0)
        parts.append(
            Text(
                f"in {stats.get('frames_in', 0)} frames, out {stats.get('frames_out', 0)}, "
                f"dropped {drops} malformed, {stats.get('disconnects', 0)} disconnects, "
                f"{stats.get('auth_rejected', 0)} rejected by CURVE, "
                f"{stats.get('subscriptions', 0) - stats.get('unsubscriptions', 0)} "
                f"subscriptions, up {float(stats.get('uptime_s', 0)):.0f}s"
            )
        )
    if error:
        parts.append(Text(f"broker: {error}", style="red"))
    return Group(*parts)


def watch(
    endpoint: str,
    *,
    interval: float,
    timeout: float,
    stop: threading.Event,
    console: Console | None = None,
    count: int | None = None,
    security: ClientSecurity = PLAINTEXT_CLIENT,
) -> None:
    """Redraw every ``interval`` s until ``stop`` is set (or after ``count`` redraws)."""
    console = console or Console()
    streams: list[Mapping[str, Any]] = []
    stats: Mapping[str, Any] | None = None
    drawn = 0
    ask = functools.partial(control.request, endpoint, timeout=timeout, security=security)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while not stop.is_set():
            error = None
            try:
                streams = ask("streams").get("streams", [])
                stats = ask("stats")
            except FrameBrokerError as exc:
                error = str(exc)
            live.update(render(streams, stats, error), refresh=True)
            drawn += 1
            if count is not None and drawn >= count:
                return
            deadline = time.monotonic() + interval
            stop.wait(max(0.0, deadline - time.monotonic()))
