"""The subset of OAR's SQL `properties` filters that Grid'5000 users write, compiled to predicates.

OAR hands the filter to PostgreSQL; errors come back inside `Bad resource request (...)`, so the
messages here imitate PostgreSQL's wording.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping

Props = Mapping[str, str | int]
Predicate = Callable[[Props], bool]
Value = str | int | float

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|=|<|>)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"and", "or", "not", "in", "like"}
# Deeper parentheses or `not` chains are refused, as PostgreSQL refuses what overflows its stack; the
# parser recurses once per level and the predicate it builds is evaluated under the simulator's lock.
MAX_DEPTH = 100
_LIKE_TO_GLOB = {"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}


class PropertyError(ValueError):
    """A filter OAR would refuse; the message is what PostgreSQL would say."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise PropertyError(f'ERROR:  syntax error at or near "{text[pos:].strip()[:20]}"')
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def _like(value: str, pattern: str) -> bool:
    """SQL LIKE through fnmatch, whose translation cannot backtrack catastrophically on many `%`."""
    return fnmatch.fnmatchcase(value, "".join(_LIKE_TO_GLOB.get(c, c) for c in pattern))


def _coerce(left: Value, right: Value) -> tuple[Value, Value]:
    """Compare numbers numerically when both sides look numeric, as PostgreSQL casts literals."""
    if isinstance(left, int | float) or isinstance(right, int | float):
        try:
            return float(left), float(right)
        except ValueError:
            return str(left), str(right)
    return left, right


_COMPARATORS: dict[str, Callable[[Value, Value], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _negation(predicate: Predicate) -> Predicate:
    return lambda p: not predicate(p)


class _Parser:
    def __init__(self, text: str, columns: set[str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.columns = columns
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise PropertyError("ERROR:  syntax error at end of input")
        self.pos += 1
        return token

    def expect(self, kind: str, value: str) -> None:
        token = self.take()
        if token != (kind, value):
            raise PropertyError(f'ERROR:  syntax error at or near "{token[1]}"')

    def at(self, kind: str, value: str) -> bool:
        return self.peek() == (kind, value)

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise PropertyError(f'ERROR:  syntax error at or near "{self.take()[1]}"')
        return pred

    def or_expr(self) -> Predicate:
        terms = [self.and_expr()]
        while self.at("kw", "or"):
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else lambda p: any(t(p) for t in terms)

    def and_expr(self) -> Predicate:
        terms = [self.not_expr()]
        while self.at("kw", "and"):
            self.take()
            terms.append(self.not_expr())
        return terms[0] if len(terms) == 1 else lambda p: all(t(p) for t in terms)

    def not_expr(self) -> Predicate:
        if not (self.at("kw", "not") or self.at("punct", "(")):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PropertyError("ERROR:  stack depth limit exceeded")
        if self.take() == ("kw", "not"):
            result = _negation(self.not_expr())
        else:
            result = self.or_expr()
            self.expect("punct", ")")
        self.depth -= 1
        return result

    def operand(self) -> Callable[[Props], Value]:
        kind, value = self.take()
        if kind == "str":
            literal = value[1:-1].replace("''", "'")
            return lambda _p: literal
        if kind == "num":
            try:
                number: Value = float(value) if "." in value else int(value)
            except ValueError:  # past int()'s 4300 digits: PostgreSQL's numeric still compares it
                number = float(value)
            return lambda _p: number
        if kind == "word":
            column = value.lower()
            if column not in self.columns:
                raise PropertyError(f'ERROR:  column "{column}" does not exist')
            return lambda p: p[column]
        raise PropertyError(f'ERROR:  syntax error at or near "{value}"')

    def value_list(self) -> list[Callable[[Props], Value]]:
        self.expect("punct", "(")
        items = [self.operand()]
        while self.at("punct", ","):
            self.take()
            items.append(self.operand())
        self.expect("punct", ")")
        return items

    def comparison(self) -> Predicate:
        left = self.operand()
        negate = False
        if self.at("kw", "not"):
            self.take()
            negate = True
        kind, value = self.take()
        if kind == "kw" and value == "in":
            items = self.value_list()

            def member(p: Props) -> bool:
                return any(_COMPARATORS["="](*_coerce(left(p), item(p))) for item in items) != negate

            return member
        if kind == "kw" and value == "like":
            pattern = self.operand()
            return lambda p: _like(str(left(p)), str(pattern(p))) != negate
        if negate or kind != "op":
            raise PropertyError(f'ERROR:  syntax error at or near "{value}"')
        right = self.operand()
        compare = _COMPARATORS[value]
        return lambda p: compare(*_coerce(left(p), right(p)))


def compile_properties(text: str, columns: set[str]) -> Predicate:
    """Compile `text` (empty means everything) into a predicate over node property dicts."""
    if not text.strip():
        return lambda _p: True
    return _Parser(text, columns).parse()
