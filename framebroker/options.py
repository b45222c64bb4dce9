"""Options declared once: a config dataclass field carries its command-line flag.

::

    @dataclass(frozen=True)
    class BrokerConfig:
        stale_after: float = field(
            default=3.0,
            metadata=option("--stale-after", type=parse_positive, metavar="SECONDS",
                            help="seconds without frames after which a stream is stale"),
        )

    add_options(parser, BrokerConfig)                      # --stale-after, FRAMEBROKER_STALE_AFTER
    config = config_from_args(BrokerConfig, args, security=server_security(args))

The flag's default *is* the field's default, so the library and the command line cannot
drift apart (tests/test_options.py builds every service's config from an empty command
line and compares it with ``Config()``). Flags go through :func:`framebroker.config.add_option`:
each reads ``FRAMEBROKER_<FLAG>`` when set, and its help shows the default and the variable.

- ``show`` turns the field's default into the text typed on a command line (``64M`` for
  64 MiB): help texts show that, and argparse parses it with ``type`` like any value.
- A field whose default comes from a ``default_factory`` (or that has none) gets ``None``
  as its flag's default; an absent flag then leaves the field to the dataclass.
- ``convert`` turns the parsed value into the field's value (``"cam1,cam2"`` -> a tuple).
- ``declare(parser, option, default)`` replaces the declaration for a flag that needs its
  own (``--meta``: repeated, its variable a comma-separated list).

Fields without ``option(...)`` metadata have no flag; :func:`config_from_args` takes them
(and overrides) as keyword arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from framebroker.config import add_option
from framebroker.errors import ConfigError

KEY = "framebroker.option"
T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """The command-line declaration of one config field (see :func:`option`)."""

    flag: str  # "--stale-after", or a positional's name ("source")
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    show: Callable[[Any], str] | None = None
    convert: Callable[[Any], Any] | None = None
    declare: Callable[[argparse.ArgumentParser, Option, Any], None] | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # choices, nargs...

    @property
    def dest(self) -> str:
        """The attribute argparse stores the value under."""
        return self.flag.lstrip("-").replace("-", "_")


def option(
    flag: str,
    *,
    help: str,
    type: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    show: Callable[[Any], str] | None = None,
    convert: Callable[[Any], Any] | None = None,
    declare: Callable[[argparse.ArgumentParser, Option, Any], None] | None = None,
    **extra: Any,
) -> dict[str, Option]:
    """Field metadata declaring the field's flag: ``field(default=..., metadata=option(...))``."""
    return {KEY: Option(flag, help, type, metavar, show, convert, declare, extra)}


def options_of(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Option]]:
    """The fields of the dataclass ``cls`` that have a flag, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [(f, f.metadata[KEY]) for f in dataclasses.fields(cls) if KEY in f.metadata]


def flag_default(f: dataclasses.Field[Any], opt: Option) -> Any:
    """The flag's default: the field's (as ``show`` writes it), or None (a factory decides)."""
    if f.default is dataclasses.MISSING:
        return None
    if opt.show is not None and f.default is not None:
        return opt.show(f.default)
    return f.default


def add_options(
    parser: argparse.ArgumentParser,
    cls: type[Any],
    *,
    only: Sequence[str] | None = None,
    skip: Collection[str] = (),
) -> None:
    """Declare the flag of every field of ``cls`` that has one, in field order; or of the
    fields named in ``only``, in that order; ``skip`` leaves some out. So a command can put
    its own flags in between."""
    selected = options_of(cls)
    if only is not None:
        by_name = {f.name: (f, opt) for f, opt in selected}
        selected = [by_name[name] for name in only]
    for f, opt in selected:
        if f.name in skip:
            continue
        default = flag_default(f, opt)
        if opt.declare is not None:
            opt.declare(parser, opt, default)
            continue
        kwargs = dict(opt.extra)
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        add_option(parser, opt.flag, default=default, type=opt.type, help=opt.help, **kwargs)


def config_from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls(...)`` from the parsed flags of its fields; ``given`` sets or overrides fields."""
    values: dict[str, Any] = {}
    for f, opt in options_of(cls):
        if f.name in given:
            continue
        value = getattr(args, opt.dest)
        if value is None and f.default is dataclasses.MISSING:
            continue  # not given: the field's default_factory (or the caller) decides
        values[f.name] = opt.convert(value) if opt.convert is not None else value
    return cls(**values, **given)


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` whose ConfigError argparse prints as it is (not "invalid value")."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert
