"""PNG plots (matplotlib, Agg) where a curve says more than a table.

Every function returns the file names it wrote in ``out``; without matplotlib (the
``bench`` extra is not installed) it writes nothing and returns an empty list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"ours": "tab:blue", "imagezmq": "tab:red", "proxy": "tab:orange", "direct": "tab:green"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def freshness(samples: dict[str, list[list[Any]]], out: Path) -> list[str]:
    """Frame age over time, ours vs imagezmq, one panel per stream count (log scale)."""
    plt = _pyplot()
    if plt is None:
        return []
    counts = sorted({int(k.split("/")[1]) for k in samples})
    fig, axes = plt.subplots(1, len(counts), figsize=(5 * len(counts), 4), squeeze=False)
    for ax, n in zip(axes[0], counts, strict=True):
        for impl in ("ours", "imagezmq"):
            rows = samples.get(f"{impl}/{n}", [])
            ax.plot(
                [r[0] for r in rows],
                [max(r[2], 0.1) for r in rows],
                ".",
                ms=2,
                color=COLOURS[impl],
                label=impl,
            )
        ax.axhline(1000 / 30 + 10, color="grey", lw=0.8, ls="--", label="period + 10 ms")
        ax.set_yscale("log")
        ax.set_title(f"{n} stream(s) at 30 fps, 100 ms per frame")
        ax.set_xlabel("seconds")
        ax.set_ylabel("frame age at processing start (ms)")
        ax.legend(loc="upper left", fontsize=8)
    return [_save(fig, plt, out / "freshness.png")]


def latency_cdf(samples: dict[str, list[float]], out: Path) -> list[str]:
    """Latency distributions per case (size, idle/load), one line per hop."""
    plt = _pyplot()
    if plt is None:
        return []
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    groups = list(dict.fromkeys(k.rsplit("/", 2)[0] for k in samples))
    cols = min(2, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    for ax, group in zip(axes.flat, groups, strict=False):
        for key, values in samples.items():
            if not key.startswith(group + "/") or not values:
                continue
            kind, transport = key.rsplit("/", 2)[1:]
            ordered = sorted(v / 1000 for v in values)
            ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.plot(
                ordered,
                ys,
                color=COLOURS[kind],
                ls="-" if transport == "tcp" else ":",
                label=f"{kind} {transport}",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(group.replace("/", ", "))
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction of messages")
        ax.legend(loc="lower right", fontsize=8)
    return [_save(fig, plt, out / "latency.png")]


def scale(
    by_streams: dict[int, dict[str, dict[str, Any]]],
    by_subs: dict[int, dict[str, dict[str, Any]]],
    out: Path,
) -> list[str]:
    """Broker CPU per message as streams and subscribers grow, ours vs zmq.proxy."""
    plt = _pyplot()
    if plt is None:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in ("ours", "proxy"):
        xs = sorted(by_streams)
        left.plot(
            xs,
            [by_streams[x][kind]["marginal_us_per_frame"] for x in xs],
            "o-",
            color=COLOURS[kind],
            label=kind,
        )
        xs = sorted(by_subs)
        right.plot(
            xs,
            [by_subs[x][kind]["marginal_us_per_delivery"] for x in xs],
            "o-",
            color=COLOURS[kind],
            label=kind,
        )
    left.set_xscale("log")
    left.set_xlabel("streams (15 fps x 50 kB each), 1 subscriber")
    left.set_ylabel("broker CPU per frame (us, idle subtracted)")
    right.set_xscale("log", base=2)
    right.set_xlabel("subscribers")
    right.set_ylabel("broker CPU per delivered message (us)")
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.legend()
    return [_save(fig, plt, out / "scale.png")]


def _save(fig: Any, plt: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def groups(runs: dict[str, dict[int, dict[str, Any]]], out: Path) -> list[str]:
    """Distinct frames processed per second and frame age vs consumers: group vs fan-out."""
    plt = _pyplot()
    if plt is None:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"group": ("tab:blue", "o-"), "fan-out": ("tab:grey", "s--")}
    for mode, by_n in runs.items():
        xs = sorted(by_n)
        colour, style = styles[mode]
        left.plot(xs, [by_n[x]["unique_per_s"] for x in xs], style, color=colour, label=mode)
        right.plot(xs, [by_n[x]["age_p99_ms"] for x in xs], style, color=colour, label=mode)
    xs = sorted(next(iter(runs.values())))
    one = runs["group"][xs[0]]["unique_per_s"]
    left.plot(xs, [one * x for x in xs], ":", color="black", lw=0.8, label="linear")
    left.set_xlabel("consumers (100 ms per frame each)")
    left.set_ylabel("distinct frames processed per second")
    right.axhline(1000 / 30 + 10, color="grey", lw=0.8, ls="--", label="period + 10 ms")
    right.set_xlabel("consumers")
    right.set_ylabel("frame age at processing start, p99 (ms)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    return [_save(fig, plt, out / "groups.png")]
