"""Processors: what a consumer runs on each frame, and how to find one by name.

A processor is any callable ``(frame) -> dict | None``: a plain function, or an object
with ``__call__`` (keep per-stream state keyed by ``frame.stream``). Its result must be
made of msgpack-able plain types (dict, list, str, int, float, bool, None; numpy scalars
and arrays are converted). Returning None sends nothing.

``load_processor(spec)`` takes a built-in name (``stats``, ``motion``, ``faces``,
``qr``), ``module:attribute`` or ``path/to/file.py:attribute``; a class is instantiated
with no arguments, anything else callable is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framebroker.errors import ProcessorError

if TYPE_CHECKING:
    from ..frame import Frame

Processor = Callable[["Frame"], Mapping[str, Any] | None]


def _stats() -> Processor:
    from .stats import stats

    return stats


def _motion() -> Processor:
    from .motion import MotionDetector

    return MotionDetector()


def _faces() -> Processor:
    from .faces import FaceDetector

    return FaceDetector()


def _qr() -> Processor:
    from .qr import QRReader

    return QRReader()


# name -> (factory, one-line description). A factory makes a fresh processor, so state
# (motion's previous frames) is never shared between consumers.
BUILTINS: dict[str, tuple[Callable[[], Processor], str]] = {
    "stats": (_stats, "brightness, sharpness (variance of Laplacian), size, payload bytes"),
    "motion": (_motion, "frame differencing per stream: score and boxes of moving regions"),
    "faces": (_faces, "OpenCV's frontal-face Haar cascade: boxes"),
    "qr": (_qr, "OpenCV's QR detector: decoded text and corners"),
}


def builtin_names() -> list[str]:
    return sorted(BUILTINS)


def load_processor(spec: str) -> Processor:
    """A ready-to-call processor for ``spec``; raises ProcessorError with what to fix."""
    spec = spec.strip()
    if spec in BUILTINS:
        return BUILTINS[spec][0]()
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ProcessorError(
            f"unknown processor {spec!r}: use a built-in ({', '.join(builtin_names())}), "
            "module:function or path/to/file.py:function"
        )
    module = _load_file(target) if _is_path(target) else _import(target)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ProcessorError(f"{target!r} has no attribute {attr!r}") from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ProcessorError(f"cannot create processor {spec!r}: {exc}") from exc
    if not callable(obj):
        raise ProcessorError(f"{spec!r} is a {type(obj).__name__}, not a callable processor")
    processor: Processor = obj
    return processor


def processor_name(processor: object) -> str:
    """A readable name for logs."""
    return str(getattr(processor, "__name__", type(processor).__name__))


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ProcessorError(f"cannot import processor module {name!r}: {exc}") from exc
    except Exception as exc:
        raise ProcessorError(f"importing processor module {name!r} failed: {exc}") from exc


def _load_file(target: str) -> Any:
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise ProcessorError(f"processor file not found: {target}")
    name = f"framebroker_processor_{path.stem}_{abs(hash(str(path))):x}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ProcessorError(f"cannot load processor file {target}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ProcessorError(f"loading processor file {target} failed: {exc}") from exc
    return module


__all__ = ["BUILTINS", "Processor", "builtin_names", "load_processor", "processor_name"]
