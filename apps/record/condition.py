"""The trigger condition language: a small expression over one result, parsed by hand.

::

    motion.score > 0.02
    score >= 0.5 and stream == "site1/door"
    (faces.count > 0 or qr.text != "") and not consumer == "test"

Grammar (keywords are lower case)::

    expr    = or
    or      = and ("or" and)*
    and     = not ("and" not)*
    not     = "not" not | compare
    compare = operand [("==" | "!=" | "<" | "<=" | ">" | ">=") operand]
    operand = NUMBER | STRING | "true" | "false" | name | "(" expr ")"
    name    = IDENT ("." IDENT)*          IDENT: letters, digits, _ and -, not a digit first

A name is a path into the result map (``boxes.0`` indexes a list); ``stream``,
``consumer`` and ``seq`` name the result's own fields when the result has no key of that
name; and a first component equal to the consumer's name (``--name motion``) selects
that consumer's results only, so ``motion.score`` reads ``score`` of consumer ``motion``.
A name that is missing, or a comparison of a string with a number, is false, never an
error: results differ between processors. No ``eval``: the text becomes a small tree of
the classes below, checked once when the recorder starts (ConfigError says where it is
wrong).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from framebroker.errors import ConfigError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\))
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)
    )""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYWORDS = {"and", "or", "not", "true", "false"}
_MISSING = object()


@dataclass(frozen=True)
class Subject:
    """What a condition is evaluated on: one result and whose it is."""

    result: Mapping[str, Any]
    stream: str = ""
    consumer: str = ""
    seq: int = 0


class Node:
    def value(self, subject: Subject) -> Any:
        raise NotImplementedError

    def holds(self, subject: Subject) -> bool:
        value = self.value(subject)
        return value is not _MISSING and bool(value)


@dataclass(frozen=True)
class Literal(Node):
    constant: Any

    def value(self, subject: Subject) -> Any:
        return self.constant


@dataclass(frozen=True)
class Name(Node):
    path: tuple[str, ...]

    def value(self, subject: Subject) -> Any:
        path = self.path
        if len(path) > 1 and path[0] == subject.consumer and path[0] not in subject.result:
            path = path[1:]
        elif len(path) == 1 and path[0] not in subject.result:
            own = {"stream": subject.stream, "consumer": subject.consumer, "seq": subject.seq}
            if path[0] in own:
                return own[path[0]]
        current: Any = subject.result
        for part in path:
            if isinstance(current, Mapping) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return _MISSING
        return current


@dataclass(frozen=True)
class Compare(Node):
    left: Node
    op: str
    right: Node

    def value(self, subject: Subject) -> Any:
        a, b = self.left.value(subject), self.right.value(subject)
        if a is _MISSING or b is _MISSING:
            return False
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
        if self.op not in ("==", "!=") and not numbers and type(a) is not type(b):
            return False
        try:
            return _COMPARE[self.op](a, b)
        except TypeError:
            return False


@dataclass(frozen=True)
class Not(Node):
    inner: Node

    def value(self, subject: Subject) -> Any:
        return not self.inner.holds(subject)


@dataclass(frozen=True)
class Both(Node):
    left: Node
    right: Node

    def value(self, subject: Subject) -> Any:
        return self.left.holds(subject) and self.right.holds(subject)


@dataclass(frozen=True)
class Either(Node):
    left: Node
    right: Node

    def value(self, subject: Subject) -> Any:
        return self.left.holds(subject) or self.right.holds(subject)


@dataclass(frozen=True)
class Condition:
    """A parsed condition: ``Condition.parse(text).matches(subject)``."""

    text: str
    root: Node

    @classmethod
    def parse(cls, text: str) -> Condition:
        return cls(text, _Parser(text).parse())

    def matches(self, subject: Subject) -> bool:
        return self.root.holds(subject)

    def __str__(self) -> str:
        return self.text


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise ConfigError("trigger condition is empty; e.g. 'motion.score > 0.02'")
        node = self._or()
        if self.pos < len(self.tokens):
            self._fail(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _accept(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[1] == word and token[0] in ("op", "name"):
            self.pos += 1
            return True
        return False

    def _or(self) -> Node:
        node = self._and()
        while self._accept("or"):
            node = Either(node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._accept("and"):
            node = Both(node, self._not())
        return node

    def _not(self) -> Node:
        if self._accept("not"):
            return Not(self._not())
        return self._compare()

    def _compare(self) -> Node:
        left = self._operand()
        token = self._peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARE:
            self.pos += 1
            return Compare(left, token[1], self._operand())
        return left

    def _operand(self) -> Node:
        token = self._peek()
        if token is None:
            self._fail("the condition ends where a value was expected")
        kind, text = token
        self.pos += 1
        if kind == "number":
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "string":
            return Literal(_unquote(text))
        if text == "(":
            node = self._or()
            if not self._accept(")"):
                self._fail("missing ')'")
            return node
        if kind == "name" and text in ("true", "false"):
            return Literal(text == "true")
        if kind == "name" and text not in _KEYWORDS:
            return Name(tuple(text.split(".")))
        self._fail(f"unexpected {text!r} where a value was expected")

    def _fail(self, why: str) -> NoReturn:
        raise ConfigError(f"trigger condition {self.text!r}: {why}")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise ConfigError(f"trigger condition {text!r}: cannot read {text[pos:].strip()!r}")
        tokens.append((match.lastgroup, match[match.lastgroup]))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])
