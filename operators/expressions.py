"""Reward expressions: arithmetic over an outcome event's numeric fields, evaluated on columns.

A pipeline spec states a decision's reward as a formula over the fields of the outcome that
settles it (``value = "1 - rebuffered - startup_ms / 5000"``) rather than as Python code, so a
spec stays data: it can be validated when it is loaded, with an error that points at the
column of the mistake, and evaluating it cannot run anything but arithmetic. That is why the
tokenizer and parser here are hand-written and never hand user text to ``eval`` or to Python's
``ast``: the grammar accepts numbers, field names, ``+ - * /``, parentheses and four
functions, and nothing else (no attribute access, no strings, no calls to anything but
``min``, ``max``, ``abs`` and ``log``).

Grammar (usual precedence, binary operators left-associative)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("+" | "-") unary | primary
    primary := NUMBER | FIELD | FUNC "(" expr ("," expr)* ")" | "(" expr ")"

Evaluation works on whole columns, one numpy operation per node (bool fields read as 0/1, ints
as floats), and returns float64. Division by zero and ``log`` of a non-positive number give
``inf``/``NaN`` silently (IEEE semantics, no warnings), and ``min``/``max`` propagate ``NaN``
(``max(0, NaN)`` is ``NaN``, unlike Python's ``max``): a non-finite reward row is the caller's
to handle (the policies refuse to learn from one).

>>> expr = Expression.parse(
...     "1 - rebuffered - startup_ms / 5000",
...     {"rebuffered": "bool", "startup_ms": "float", "cdn": "string"},
... )
>>> expr.fields
('rebuffered', 'startup_ms')
>>> expr.evaluate({"rebuffered": np.array([False, True]), "startup_ms": np.array([500.0, 0.0])})
array([0.9, 0. ])
>>> try:
...     Expression.parse("1 - startup / 5000", {"startup_ms": "float", "cdn": "string"})
... except ExpressionError as e:
...     print(e)
unknown field 'startup' at column 5 (known: startup_ms)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "NUMERIC_TYPES",
    "Binary",
    "Call",
    "Expression",
    "ExpressionError",
    "Field",
    "Node",
    "Number",
    "Unary",
]

#: longest accepted expression text, in characters (a reward formula is one line)
MAX_LENGTH = 1_000
#: deepest accepted nesting of parentheses, unary signs and function calls; bounds the
#: parser's recursion so that no input can exhaust Python's stack
MAX_DEPTH = 64
#: declared field types an expression may read (the same as ``schemas.spec.NUMERIC_TYPES``;
#: kept here so this pure-logic module does not depend on the spec loader)
NUMERIC_TYPES = ("float", "int", "bool")
#: function name -> number of arguments
FUNCTIONS: dict[str, int] = {"abs": 1, "log": 1, "max": 2, "min": 2}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says what is wrong and,
    for a syntax or name error, at which (1-based) column of the text."""


# --------------------------------------------------------------------------------- AST
# Public and immutable so that a spec checker or an explain command can walk it; every node
# keeps the 1-based column of its first character (an operator's own column for Binary) so
# later checks can point at the text as the parser does.
@dataclass(frozen=True)
class Number:
    """A literal, already converted to float."""

    value: float
    column: int


@dataclass(frozen=True)
class Field:
    """A numeric field of the outcome event (checked against the declared types)."""

    name: str
    column: int


@dataclass(frozen=True)
class Unary:
    """A unary minus."""

    op: str  # "-" (a unary "+" is dropped by the parser: it is the identity)
    operand: Node
    column: int


@dataclass(frozen=True)
class Binary:
    """``left op right``."""

    op: str  # "+", "-", "*", "/"
    left: Node
    right: Node
    column: int


@dataclass(frozen=True)
class Call:
    """``func(args...)``, arity already checked."""

    func: str  # a key of FUNCTIONS
    args: tuple[Node, ...]
    column: int


Node = Number | Field | Unary | Binary | Call


# --------------------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op" (+ - * / ( ) ,), "end"
    text: str
    column: int  # 1-based


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]*")
_OPS = frozenset("+-*/(),")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c in _OPS:
            tokens.append(_Token("op", c, i + 1))
            i += 1
        elif c.isascii() and (c.isdigit() or (c == "." and text[i + 1 : i + 2].isdigit())):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            tail = _NUMBER_TAIL.match(text, end)
            if tail is not None and tail.end() > end:
                # "1e", "2x", "1.2.3": a number glued to more characters is a typo, not a product
                bad = text[i : tail.end()]
                raise ExpressionError(f"malformed number {bad!r} at column {i + 1}")
            value = float(m.group())
            if not math.isfinite(value):
                raise ExpressionError(f"number {m.group()!r} at column {i + 1} is out of range")
            tokens.append(_Token("num", m.group(), i + 1))
            i = end
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _NAME.match(text, i)
            assert m is not None
            tokens.append(_Token("name", m.group(), i + 1))
            i = m.end()
        else:
            raise ExpressionError(f"unexpected character {c!r} at column {i + 1}")
    tokens.append(_Token("end", "", n + 1))
    return tokens


# ------------------------------------------------------------------------------ parser
def _type_phrase(ftype: str) -> str:
    return "a string" if ftype in ("string", "str") else f"a {ftype}"


class _Parser:
    """Recursive descent over the token list; ``depth`` counts the open parentheses, unary
    signs and calls, which is all the parser recurses on (binary chains are loops)."""

    def __init__(self, text: str, fields: Mapping[str, str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.fields = fields
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def _unexpected(self, expected: str = "") -> ExpressionError:
        t = self.tok
        what = "end of expression" if t.kind == "end" else repr(t.text)
        hint = f" ({expected})" if expected else ""
        return ExpressionError(f"unexpected {what} at column {t.column}{hint}")

    def _at(self, symbols: tuple[str, ...]) -> bool:
        return self.tok.kind == "op" and self.tok.text in symbols

    def _enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nests deeper than {MAX_DEPTH} levels at column {column}"
            )

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            raise self._unexpected("expected an operator or the end")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self._at(("+", "-")):
            op = self.tok
            self.pos += 1
            node = Binary(op.text, node, self.term(), op.column)
        return node

    def term(self) -> Node:
        node = self.unary()
        while self._at(("*", "/")):
            op = self.tok
            self.pos += 1
            node = Binary(op.text, node, self.unary(), op.column)
        return node

    def unary(self) -> Node:
        t = self.tok
        if self._at(("+", "-")):
            self.pos += 1
            self._enter(t.column)
            operand = self.unary()
            self.depth -= 1
            return operand if t.text == "+" else Unary("-", operand, t.column)
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.pos += 1
            return Number(float(t.text), t.column)
        if t.kind == "name":
            self.pos += 1
            if self._at(("(",)):
                return self.call(t)
            return self.field(t)
        if self._at(("(",)):
            self.pos += 1
            self._enter(t.column)
            node = self.expr()
            self.depth -= 1
            self._close(t)
            return node
        raise self._unexpected("expected a number, a field, a function or '('")

    def _close(self, opener: _Token) -> None:
        if self._at((")",)):
            self.pos += 1
            return
        if self.tok.kind == "end":
            raise ExpressionError(f"unclosed '(' at column {opener.column}")
        raise self._unexpected("expected ')' or an operator")

    def field(self, t: _Token) -> Field:
        ftype = self.fields.get(t.text)
        if ftype is None:
            # the fields that could go here: a string field is no help in arithmetic
            known = ", ".join(sorted(f for f, t in self.fields.items() if t in NUMERIC_TYPES))
            known = known or "no numeric fields"
            raise ExpressionError(f"unknown field {t.text!r} at column {t.column} (known: {known})")
        if ftype not in NUMERIC_TYPES:
            raise ExpressionError(
                f"field {t.text!r} is {_type_phrase(ftype)}, not a number, at column {t.column}"
            )
        return Field(t.text, t.column)

    def call(self, name: _Token) -> Call:
        arity = FUNCTIONS.get(name.text)
        if arity is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(
                f"unknown function {name.text!r} at column {name.column} (known: {known})"
            )
        opener = self.tok
        self.pos += 1  # "("
        self._enter(opener.column)
        args: list[Node] = []
        if not self._at((")",)):
            args.append(self.expr())
            while self._at((",",)):
                self.pos += 1
                args.append(self.expr())
        self.depth -= 1
        self._close(opener)
        if len(args) != arity:
            plural = "argument" if arity == 1 else "arguments"
            raise ExpressionError(
                f"{name.text} expects {arity} {plural}, got {len(args)}, at column {name.column}"
            )
        return Call(name.text, tuple(args), name.column)


# ---------------------------------------------------------------------------- program
# Evaluation runs a postfix program on a value stack rather than recursing over the AST: a
# long chain "a + b + c + ..." is as deep as it is long, and must not be bounded by Python's
# recursion limit.
_Instr = tuple[str, Any]  # ("num", float) | ("field", name) | ("op", symbol) | ("call", func)

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "min": np.minimum,
    "max": np.maximum,
}
_UNARY: dict[str, Callable[[Any], Any]] = {"neg": np.negative, "abs": np.abs, "log": np.log}


def _compile(root: Node) -> tuple[_Instr, ...]:
    """Post-order walk with an explicit stack (see above)."""
    out: list[_Instr] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, Number):
            out.append(("num", node.value))
        elif isinstance(node, Field):
            out.append(("field", node.name))
        elif children_done:
            if isinstance(node, Unary):
                out.append(("op", "neg"))
            elif isinstance(node, Binary):
                out.append(("op", node.op))
            else:
                out.append(("op", node.func))
        else:
            stack.append((node, True))
            children: tuple[Node, ...]
            if isinstance(node, Unary):
                children = (node.operand,)
            elif isinstance(node, Binary):
                children = (node.left, node.right)
            else:
                children = node.args
            stack.extend((c, False) for c in reversed(children))
    return tuple(out)


class Expression:
    """A parsed reward expression. Build it with :meth:`parse`; it is immutable, picklable
    (as its text and the types of the fields it reads) and ``str()`` gives the text back."""

    text: str
    fields: tuple[str, ...]
    ast: Node

    def __init__(self, text: str, ast: Node, field_types: Mapping[str, str]) -> None:
        """Use :meth:`parse`; this only stores what it computed."""
        self.text = text
        self.ast = ast
        self._program = _compile(ast)
        seen = dict.fromkeys(arg for kind, arg in self._program if kind == "field")
        # the post-order program lists fields left to right: that is first-use order
        self.fields = tuple(seen)
        self._field_types = {f: field_types[f] for f in self.fields}

    @classmethod
    def parse(cls, text: str, fields: Mapping[str, str]) -> Expression:
        """Parse ``text`` against ``fields`` (name -> declared type: "float", "int", "bool"
        may be read; any other type is an error if used). Raises :class:`ExpressionError`."""
        if not isinstance(text, str):
            raise ExpressionError(f"expression: expected a string, got {type(text).__name__}")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(
                f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}"
            )
        if not text.strip():
            raise ExpressionError("empty expression")
        return cls(text, _Parser(text, fields).parse(), fields)

    def evaluate(self, columns: Mapping[str, Any]) -> np.ndarray:
        """The expression over whole columns: float64 (n,), a new array.

        ``columns`` maps at least every name in :attr:`fields` to a 1-D numeric or bool array
        (other entries are ignored); ``n`` is their common length, or the length of any column
        given when the expression reads no field. Non-finite results (``x / 0``, ``log(0)``)
        are returned as they are, without warnings: deciding what such a row means is the
        caller's job."""
        values: dict[str, np.ndarray] = {}
        n: int | None = None
        for name in self.fields:
            if name not in columns:
                raise ExpressionError(
                    f"column {name!r} is missing (the expression reads: {', '.join(self.fields)})"
                )
            col = np.asarray(columns[name])
            if col.ndim != 1 or col.dtype.kind not in "biuf":
                raise ExpressionError(
                    f"column {name!r}: expected a 1-D numeric or bool array, "
                    f"got {col.dtype} with shape {col.shape}"
                )
            if n is not None and len(col) != n:
                raise ExpressionError(f"column {name!r} has {len(col)} rows, expected {n}")
            n = len(col)
            values[name] = col.astype(np.float64, copy=False)
        if n is None:
            if not columns:
                raise ExpressionError("no columns given: cannot tell the number of rows")
            n = len(np.asarray(next(iter(columns.values()))))
        stack: list[Any] = []
        with np.errstate(all="ignore"):
            for kind, arg in self._program:
                if kind == "num":
                    stack.append(np.float64(arg))
                elif kind == "field":
                    stack.append(values[arg])
                elif arg in _UNARY:
                    stack.append(_UNARY[arg](stack.pop()))
                else:
                    right = stack.pop()
                    stack.append(_BINARY[arg](stack.pop(), right))
        out = np.empty(n, dtype=np.float64)
        out[...] = stack.pop()  # a copy even when the expression is one column or a constant
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        # re-parse on load: the pickle is a string and a small dict, whatever the AST depth
        return (Expression.parse, (self.text, self._field_types))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return self.text == other.text and self._field_types == other._field_types

    def __hash__(self) -> int:
        return hash((self.text, tuple(self._field_types.items())))
