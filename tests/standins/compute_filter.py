"""The `filter` parameter of Compute Engine list calls, in the two dialects the API reference
describes, as far as gpuctl needs them. Anything else is refused with FilterError (an HTTP 400),
never read as "match everything".

AIP-160 dialect: comparisons `field OP value` with OP one of = != > < >= <= and `:` (substring on
strings, `:*` for "is set"); values quoted ("..." or '...') or bare; parentheses; explicit AND/OR;
juxtaposed expressions are ANDed. As AIP-160 has it, OR binds tighter than AND.

Regular-expression dialect: `field eq LITERAL` / `field ne LITERAL` alone (the literal is the rest
of the text, quotes optional), or several parenthesized `(field eq literal)` groups, ANDed. The
literal must match the whole field (RE2 semantics; Python `re.fullmatch` here).
"""

from __future__ import annotations

import re
from typing import Callable

Predicate = Callable[[dict], bool]
_MISSING = object()


class FilterError(ValueError):
    pass


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<lp>\() | (?P<rp>\)) |
      (?P<kw>AND|OR|NOT)(?=[\s(]|$) |
      (?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>!=|>=|<=|=|>|<|:|\beq\b|\bne\b)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+)
    )""", re.VERBOSE)


def compile_filter(text: str | None, known_fields: set[str]) -> Predicate:
    if text is None or not text.strip():
        return lambda resource: True
    if re.search(r"\s(eq|ne)\s", text):
        return _compile_regex_dialect(text, known_fields)
    tokens = _tokenize(text)
    parser = _Parser(tokens, known_fields, text)
    predicate = parser.parse_and()
    if parser.pos != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.pos][1]!r}")
    return predicate


def _tokenize(text: str) -> list[tuple]:
    tokens, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise FilterError(f"cannot parse {text[pos:]!r}")
        pos = match.end()
        if match["lp"]:
            tokens.append(("(", "("))
        elif match["rp"]:
            tokens.append((")", ")"))
        elif match["kw"]:
            if match["kw"] == "NOT":
                raise FilterError("NOT is not supported by the stand-in")
            tokens.append(("kw", match["kw"]))
        else:
            tokens.append(("cmp", (match["field"], match["op"], match["value"])))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple], known: set[str], text: str):
        self.tokens, self.known, self.text, self.pos = tokens, known, text, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def parse_and(self) -> Predicate:
        parts = [self.parse_or()]
        while True:
            kind, value = self.peek()
            if kind == "kw" and value == "AND":
                self.pos += 1
                parts.append(self.parse_or())
            elif kind in ("(", "cmp"):  # juxtaposition means AND
                parts.append(self.parse_or())
            else:
                break
        return lambda r: all(p(r) for p in parts)

    def parse_or(self) -> Predicate:
        parts = [self.parse_term()]
        while self.peek() == ("kw", "OR"):
            self.pos += 1
            parts.append(self.parse_term())
        return lambda r: any(p(r) for p in parts)

    def parse_term(self) -> Predicate:
        kind, value = self.peek()
        if kind == "(":
            self.pos += 1
            inner = self.parse_and()
            if self.peek()[0] != ")":
                raise FilterError("unbalanced parentheses")
            self.pos += 1
            return inner
        if kind == "cmp":
            self.pos += 1
            return _comparison(*value, self.known)
        raise FilterError(f"expected a comparison, got {value!r}")


def _unquote(value: str) -> tuple[str, bool]:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", value[1:-1]), True
    return value, False


def _check_field(field: str, known: set[str]) -> list[str]:
    path = field.split(".")
    if path[0] not in known:
        raise FilterError(f"unknown field {path[0]!r}")
    return path


def _resolve(resource, path: list[str]) -> list:
    """Every value at `path`; a list along the way fans out (any element may match)."""
    values = [resource]
    for key in path:
        nxt = []
        for v in values:
            if isinstance(v, list):
                nxt.extend(item.get(key, _MISSING) for item in v if isinstance(item, dict))
            elif isinstance(v, dict):
                nxt.append(v.get(key, _MISSING))
        values = [v for v in nxt if v is not _MISSING]
    flat = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return flat


def _as_number(value):
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equals(actual, literal: str) -> bool:
    if isinstance(actual, bool):
        return literal.lower() == ("true" if actual else "false")
    a, b = _as_number(actual), _as_number(literal)
    if a is not None and b is not None and not isinstance(actual, str):
        return a == b
    return str(actual) == literal


def _comparison(field: str, op: str, raw: str, known: set[str]) -> Predicate:
    if op in ("eq", "ne"):
        raise FilterError("regular-expression and AIP-160 expressions cannot be mixed")
    path = _check_field(field, known)
    literal, quoted = _unquote(raw)
    if op == ":" and raw == "*":
        return lambda r: bool(_resolve(r, path))
    if "*" in literal:
        raise FilterError("wildcards in values are not supported by the stand-in")
    if op == "=":
        return lambda r: any(_equals(v, literal) for v in _resolve(r, path))
    if op == "!=":
        return lambda r: not any(_equals(v, literal) for v in _resolve(r, path))
    if op == ":":
        return lambda r: any(literal in v if isinstance(v, str) else _equals(v, literal)
                             for v in _resolve(r, path))
    order = {">": lambda a, b: a > b, "<": lambda a, b: a < b,
             ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}[op]

    def compare(r: dict) -> bool:
        for v in _resolve(r, path):
            a, b = _as_number(v), _as_number(literal)
            if a is not None and b is not None:
                if order(a, b):
                    return True
            elif order(str(v), literal):
                return True
        return False

    return compare


def _regex_predicate(field: str, op: str, literal: str, known: set[str]) -> Predicate:
    path = _check_field(field, known)
    literal, _ = _unquote(literal.strip())
    try:
        pattern = re.compile(literal)
    except re.error as exc:
        raise FilterError(f"bad regular expression {literal!r}: {exc}") from None

    def matches(r: dict) -> bool:
        hit = any(pattern.fullmatch(str(v).lower() if isinstance(v, bool) else str(v))
                  for v in _resolve(r, path))
        return hit if op == "eq" else not hit

    return matches


def _compile_regex_dialect(text: str, known: set[str]) -> Predicate:
    text = text.strip()
    if re.search(r"(!=|>=|<=|[=<>:])\s*\S", re.sub(r"(eq|ne)\s+.*?(\)|$)", "", text)):
        raise FilterError("regular-expression and AIP-160 expressions cannot be mixed")
    single = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.\-]*)\s+(eq|ne)\s+(.+)", text, re.S)
    if single and not text.startswith("("):
        return _regex_predicate(single[1], single[2], single[3], known)
    group = re.compile(r"\s*\(\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s+(eq|ne)\s+"
                       r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^()]*?)\s*\)")
    parts, pos = [], 0
    while pos < len(text):
        match = group.match(text, pos)
        if not match:
            raise FilterError(f"cannot parse {text[pos:]!r}")
        parts.append(_regex_predicate(match[1], match[2], match[3], known))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return lambda r: all(p(r) for p in parts)
