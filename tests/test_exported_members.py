"""The first page, ``import framebroker``: exactly the curated names, each one resolving.

As httpx's tests/test_exported_members.py: adding or removing a public name is a decision,
so it fails here until this list says so. The names are imported lazily (PEP 562); the
``TYPE_CHECKING`` block that type checkers read must name the same objects.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

import framebroker
from tests.conftest import ROOT

EXPECTED = {
    # pull and push
    "subscribe",
    "Subscription",
    "Frame",
    "Publisher",
    # the services and their configuration
    "Broker",
    "BrokerConfig",
    "Sink",
    "SinkConfig",
    "Producer",
    "ProducerConfig",
    "Consumer",
    "ConsumerConfig",
    "Viewer",
    "ViewerConfig",
    "ClientSecurity",
    "ServerSecurity",
    # the exception tree (framebroker/errors.py)
    "FrameBrokerError",
    "ConfigError",
    "ProtocolError",
    "VersionError",
    "TransportError",
    "SourceError",
    "CodecError",
    "ImageError",
    "ProcessorError",
    "ShmError",
    "StoreError",
    "RecordingError",
    "__version__",
}


def test_all_is_the_curated_sorted_set() -> None:
    assert framebroker.__all__ == sorted(EXPECTED)


def test_every_exported_name_resolves_and_dir_lists_it() -> None:
    listed = dir(framebroker)
    for name in framebroker.__all__:
        assert getattr(framebroker, name) is not None, name
        assert name in listed, name


def test_names_are_the_roles_own_objects() -> None:
    from framebroker import errors
    from framebroker.broker import Broker
    from framebroker.consumers import Consumer, Frame
    from framebroker.consumers.subscribe import subscribe
    from framebroker.producers.publisher import Publisher

    assert framebroker.Broker is Broker
    assert framebroker.Consumer is Consumer
    assert framebroker.Frame is Frame
    assert framebroker.subscribe is subscribe
    assert framebroker.Publisher is Publisher
    for name in framebroker.__all__:
        if name.endswith("Error"):
            assert getattr(framebroker, name) is getattr(errors, name)
            assert issubclass(getattr(framebroker, name), framebroker.FrameBrokerError)
    assert issubclass(framebroker.ImageError, ValueError)


def test_every_error_of_the_tree_is_exported() -> None:
    from framebroker import errors

    tree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.FrameBrokerError)
    }
    assert tree <= set(framebroker.__all__)


def test_unknown_names_raise_attribute_error_and_submodules_still_import() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        framebroker.nothing_here  # noqa: B018
    from framebroker import codec, protocol

    assert protocol.encode_frame is not None and codec.encode is not None


def type_checking_imports() -> dict[str, str]:
    """name -> "module:attribute" of the facade's ``if TYPE_CHECKING:`` block."""
    tree = ast.parse((ROOT / "framebroker" / "__init__.py").read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    out = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            out[alias.asname or alias.name] = f"{node.module}:{alias.name}"
    return out


def test_what_type_checkers_see_is_what_is_imported() -> None:
    lazy = framebroker._LAZY  # type: ignore[attr-defined]
    assert type_checking_imports() == lazy
    assert set(lazy) <= EXPECTED


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_a_name_loads_only_what_it_needs() -> None:
    errors_only = loaded_after("import framebroker\nframebroker.ConfigError")
    assert not {"zmq", "numpy", "cv2"} & errors_only
    broker = loaded_after("import framebroker\nframebroker.Broker")
    assert "zmq" in broker and "framebroker.broker.service" in broker
    assert not {"cv2", "aiohttp", "framebroker.consumers", "framebroker.viewer"} & broker
