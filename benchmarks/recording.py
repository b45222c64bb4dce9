"""Scenario 7, recording: ``framebroker record`` at 1080p JPEG, 1 and 16 streams, against
the disk's sequential write speed measured in the same run, on the same file system.

- disk: ``dd``-like sequential write of big blocks to a file, fsync'd, in MB/s;
- writer: the recorder's write path alone (rolling segments, one record per frame, fsync
  every second) fed the same 1080p JPEG frame message as fast as it takes it;
- end to end: a broker, ``framebroker record`` and a load process sending a real 1080p
  JPEG picture (q80) per stream at 30 fps through the broker. Frames/s and MB/s are what
  the recorder stored during the window (bytes on disk / the record size); "kept" is
  frames stored over frames sent, for the whole run, and the recorder's own count of
  frames it missed (seq gaps) is shown next to it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.codec import scene
from benchmarks.hops import setup
from benchmarks.procs import ROOT, Children
from benchmarks.report import Options, Result, Target
from framebroker import codec
from framebroker.protocol import FrameHeader, encode_frame

FPS = 30
WIDTH, HEIGHT = 1920, 1080
RECORD_OVERHEAD = 8  # length and CRC before every message in a segment
WORK = ROOT / "build" / "bench-recording"  # on the project's disk, not a tmpfs


def disk_write_mb_s(folder: Path, total: int, block: int = 4 << 20) -> float:
    """Sequential write of ``total`` bytes in ``block``-sized writes, fsync included."""
    data = os.urandom(block)
    path = folder / "disk-speed.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(total // block):
            os.write(fd, data)
        os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return total / elapsed / 1e6


def jpeg_message(stream: str, seq: int, payload: bytes) -> tuple[bytes, FrameHeader]:
    now = time.time_ns()
    header = FrameHeader(stream, 1, seq, now, now, "jpeg", (HEIGHT, WIDTH, 3))
    return encode_frame(header, payload), header


def writer_rate(folder: Path, payload: bytes, seconds: float) -> tuple[float, float]:
    """(frames/s, MB/s) of the recorder's write path alone, as fast as it goes."""
    from framebroker.record.writer import StreamWriter, WriterSettings

    writer = StreamWriter("bench", folder / "writer", WriterSettings(60.0, 1 << 30, 1.0))
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        message, header = jpeg_message("bench", n, payload)
        writer.write(message, header)
        n += 1
    writer.close_segment()
    elapsed = time.perf_counter() - start
    return n / elapsed, writer.bytes / elapsed / 1e6


def _recorded_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.fbseg*") if p.is_file())


def end_to_end(streams: int, jpeg_file: Path, record_size: int, window: float) -> dict[str, Any]:
    rec = WORK / f"rec-{streams}"
    with Children() as ch:
        hop = setup(ch, "ours", "tcp")
        recorder = ch.framebroker(
            "record",
            *("record", "--dir", str(rec), "--streams", "rec/", "--publish", hop.subscribe_to),
        )
        time.sleep(2.0)  # the recorder starts and subscribes
        names = [f"rec/s{i:02d}" for i in range(streams)]
        load = ch.role("load", connect=hop.sender["connect"], streams=names, fps=FPS,
                       size=0, jpeg_file=str(jpeg_file), shape=[HEIGHT, WIDTH, 3])  # fmt: skip
        load.ready()
        time.sleep(2.0)
        b0, t0 = _recorded_bytes(rec), time.monotonic()
        time.sleep(window)
        b1, t1 = _recorded_bytes(rec), time.monotonic()
        sent = (load.stop() or {}).get("sent", 0)
        time.sleep(1.0)
        recorder.stop()
        log = recorder.log_path.read_text()
    summary = re.search(r"recorded (\d+) frames .* (\d+) missed upstream", log)
    written, missed = (int(summary[1]), int(summary[2])) if summary else (0, 0)
    shutil.rmtree(rec, ignore_errors=True)
    mb_s = (b1 - b0) / (t1 - t0) / 1e6
    return {
        "streams": streams,
        "offered_fps": streams * FPS,
        "fps": (b1 - b0) / record_size / (t1 - t0),
        "mb_s": mb_s,
        "sent": sent,
        "written": written,
        "missed": missed,
        "kept": written / sent if sent else 0.0,
    }


def run(opts: Options) -> Result:
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        payload = codec.encode(scene(WIDTH, HEIGHT), "jpeg", 80).payload
        jpeg = bytes(payload)
        jpeg_file = WORK / "frame.jpg"
        jpeg_file.write_bytes(jpeg)
        record_size = len(jpeg_message("rec/s00", 0, jpeg)[0]) + RECORD_OVERHEAD
        disk = disk_write_mb_s(WORK, opts.pick(128 << 20, 1 << 30))
        w_fps, w_mb = writer_rate(WORK, jpeg, opts.pick(1.0, 5.0))
        runs = [
            end_to_end(n, jpeg_file, record_size, opts.pick(2.0, 15.0))
            for n in opts.pick((1, 4), (1, 16))
        ]
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    rows: list[list[Any]] = [["disk, sequential write (4 MB blocks, fsync)", "-", "-", disk, "-"]]
    rows.append(["record write path alone", "-", w_fps, w_mb, "-"])
    for r in runs:
        rows.append([
            f"framebroker record, {r['streams']} stream(s) x {FPS} fps", r["offered_fps"],
            r["fps"], r["mb_s"], f"{r['kept']:.1%} ({r['missed']} missed)",
        ])  # fmt: skip
    last = runs[-1]
    return Result(
        name="recording",
        title=f"Recording 1080p JPEG ({len(jpeg) / 1e3:.0f} kB a frame) to disk",
        columns=["what", "offered frames/s", "frames/s", "MB/s", "kept"],
        rows=rows,
        data={
            "disk_mb_s": disk,
            "writer_fps": w_fps,
            "writer_mb_s": w_mb,
            "runs": runs,
            "jpeg_bytes": len(jpeg),
        },
        targets=[
            Target(
                f"record keeps {last['streams']} streams x {FPS} fps (kept)",
                last["kept"],
                0.99,
                "higher",
            ),
            Target("record write path vs the disk (MB/s ratio)", w_mb / disk, 0.5, "higher"),
        ],
        notes=[
            "frames/s and MB/s of `framebroker record` are what it stored during the window "
            "(bytes on disk over the record size); kept is stored over sent for the whole "
            "run, and the recorder's own seq-gap count of missed frames is in brackets.",
        ],
    )
