"""Reward expressions: grammar, evaluation on columns, error messages, and a property test
against a plain-Python reference evaluation of randomly generated expression trees."""

from __future__ import annotations

import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eddy.operators.expressions as expressions_module
from eddy.operators.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    Binary,
    Expression,
    ExpressionError,
    Field,
    Number,
    Unary,
)

FIELDS = {
    "x": "float",
    "y": "float",
    "n": "int",
    "flag": "bool",
    "rebuffered": "bool",
    "startup_ms": "float",
    "cdn": "string",
    "tags": "list[string]",
}


def ev(text: str, **cols: Any) -> np.ndarray:
    columns = {k: np.asarray(v) for k, v in cols.items()} or {"x": np.zeros(1)}
    return Expression.parse(text, FIELDS).evaluate(columns)


# ------------------------------------------------------------------- grammar and values
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("2 * 3 + 4", 10.0),
        ("10 - 3 - 2", 5.0),  # left associative, not 10 - (3 - 2)
        ("8 / 2 / 2", 2.0),  # left associative, not 8 / (2 / 2)
        ("8 / 2 * 4", 16.0),
        ("2 - 8 / 4 * 2", -2.0),
        ("-2 * 3", -6.0),
        ("- 3 - 2", -5.0),
        ("2 * -3", -6.0),
        ("2 - -3", 5.0),
        ("--4", 4.0),
        ("+4 - +1", 3.0),
        ("-(2 + 3) * 2", -10.0),
        ("1.5e2 + .5 + 2. + 1E-1 + 3e+0", 155.6),
        ("((((7))))", 7.0),
        ("1/4", 0.25),
    ],
)
def test_precedence_and_associativity(text: str, expected: float) -> None:
    np.testing.assert_allclose(ev(text), [expected], rtol=1e-15)


def test_fields_read_as_columns() -> None:
    out = ev(
        "1 - rebuffered - startup_ms / 5000",
        rebuffered=[False, True, False],
        startup_ms=[0.0, 500.0, 2500.0],
    )
    np.testing.assert_allclose(out, [1.0, -0.1, 0.5], rtol=1e-15)
    assert out.dtype == np.float64


def test_functions() -> None:
    x = np.array([-2.0, 0.0, 3.0, math.e - 1])
    np.testing.assert_allclose(ev("abs(x)", x=x), np.abs(x))
    np.testing.assert_allclose(ev("min(x, 1)", x=x), [-2.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(ev("max(x, 1)", x=x), [1.0, 1.0, 3.0, math.e - 1])
    np.testing.assert_allclose(ev("log(1 + x)", x=x[2:]), np.log1p(x[2:]), rtol=1e-15)
    out = ev("max(0, log(1 + x)) - 2 * abs(n - 24) / 24", x=x[2:], n=np.array([24, 0]))
    np.testing.assert_allclose(out, [math.log(4.0), 1.0 - 2.0], rtol=1e-15)


def test_bool_and_int_fields_are_numbers() -> None:
    out = ev("flag * 10 + n / 2", flag=np.array([True, False]), n=np.array([3, -4]))
    np.testing.assert_array_equal(out, [11.5, -2.0])
    np.testing.assert_array_equal(ev("x", x=np.array([1.5], dtype=np.float32)), [1.5])


def test_fields_in_first_use_order_and_text_round_trips() -> None:
    e = Expression.parse("y + x * y - min(n, x) + flag", FIELDS)
    assert e.fields == ("y", "x", "n", "flag")
    assert str(e) == "y + x * y - min(n, x) + flag" == e.text
    assert Expression.parse("3", FIELDS).fields == ()


def test_ast_shape() -> None:
    e = Expression.parse("a - b * -c", {"a": "float", "b": "float", "c": "float"})
    assert isinstance(e.ast, Binary) and e.ast.op == "-" and e.ast.column == 3
    assert e.ast.left == Field("a", 1)
    right = e.ast.right
    assert isinstance(right, Binary) and right.op == "*"
    assert right.right == Unary("-", Field("c", 10), 9)
    assert Expression.parse("+2", {}).ast == Number(2.0, 2)


def test_constants_broadcast_and_results_never_alias_inputs() -> None:
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ev("2 * 3", x=x), [6.0, 6.0, 6.0])
    out = ev("x", x=x)
    out[0] = 99.0
    assert x[0] == 1.0


def test_division_by_zero_and_log_of_non_positive_are_silent() -> None:
    x = np.array([1.0, -1.0, 0.0, 0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ev("x / 0", x=x)
        logs = ev("log(x)", x=x)
        nan_max = ev("max(0, log(x))", x=x)
    np.testing.assert_array_equal(out, [np.inf, -np.inf, np.nan, np.nan, np.inf])
    np.testing.assert_array_equal(logs, [0.0, np.nan, -np.inf, -np.inf, math.log(2.0)])
    np.testing.assert_array_equal(nan_max, [0.0, np.nan, 0.0, 0.0, math.log(2.0)])


def test_pickle_and_equality() -> None:
    e = Expression.parse("1 - rebuffered - startup_ms / 5000", FIELDS)
    e2 = pickle.loads(pickle.dumps(e))
    assert e2 == e and hash(e2) == hash(e) and e2.fields == e.fields and str(e2) == str(e)
    cols = {"rebuffered": np.array([True]), "startup_ms": np.array([100.0])}
    np.testing.assert_array_equal(e2.evaluate(cols), e.evaluate(cols))
    # a chain as long as the length limit allows: no recursion limit on pickling or evaluation
    chain = Expression.parse("x+" * 499 + "x", FIELDS)
    assert len(chain.text) == 999
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(chain)).evaluate({"x": np.ones(2)}), [500.0, 500.0]
    )


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 - startup / 5000", "unknown field 'startup' at column 5 (known: flag, n, "),
        ("(x + 1) * 2) - y", "unexpected ')' at column 12 (expected an operator or the end)"),
        ("min(x)", "min expects 2 arguments, got 1, at column 1"),
        ("max(x, y, n)", "max expects 2 arguments, got 3, at column 1"),
        ("abs()", "abs expects 1 argument, got 0, at column 1"),
        ("log(x, 2)", "log expects 1 argument, got 2, at column 1"),
        ("cdn + 1", "field 'cdn' is a string, not a number, at column 1"),
        ("2 * tags", "field 'tags' is a list[string], not a number, at column 5"),
        ("sqrt(x)", "unknown function 'sqrt' at column 1 (known: abs, log, max, min)"),
        ("x +", "unexpected end of expression at column 4 (expected a number, a field, "),
        ("x * * y", "unexpected '*' at column 5 (expected a number, a field, "),
        ("x ** 2", "unexpected '*' at column 4"),
        ("x y", "unexpected 'y' at column 3 (expected an operator or the end)"),
        ("()", "unexpected ')' at column 2"),
        ("min(x, )", "unexpected ')' at column 8"),
        ("(x + 1", "unclosed '(' at column 1"),
        ("min(x, y", "unclosed '(' at column 4"),
        ("(x + 1 y)", "unexpected 'y' at column 8 (expected ')' or an operator)"),
        ("x, y", "unexpected ',' at column 2"),
        ("x $ y", "unexpected character '$' at column 3"),
        ("x == 1", "unexpected character '=' at column 3"),
        ("1e", "malformed number '1e' at column 1"),
        ("2x + 1", "malformed number '2x' at column 1"),
        ("y - 1.2.3", "malformed number '1.2.3' at column 5"),
        ("1_000", "malformed number '1_000' at column 1"),
        ("1e999", "number '1e999' at column 1 is out of range"),
        ("", "empty expression"),
        ("  \t ", "empty expression"),
        ("x" * (MAX_LENGTH + 1), f"expression is {MAX_LENGTH + 1} characters long; the limit is"),
        ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "nests deeper than 64 levels"),
        ("-" * (MAX_DEPTH + 1) + "x", "nests deeper than 64 levels at column 65"),
        ("abs(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "nests deeper than 64"),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        Expression.parse(text, FIELDS)


def test_unknown_field_lists_only_numeric_fields() -> None:
    with pytest.raises(ExpressionError) as info:
        Expression.parse("1 - startup / 5000", {"rebuffered": "bool", "startup_ms": "float"})
    assert str(info.value) == "unknown field 'startup' at column 5 (known: rebuffered, startup_ms)"
    with pytest.raises(ExpressionError, match="known: no numeric fields"):
        Expression.parse("a", {"cdn": "string"})


def test_limits_are_inclusive() -> None:
    assert Expression.parse("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, FIELDS).fields == ("x",)
    assert len(Expression.parse("1+" * 499 + "10", FIELDS).text) == MAX_LENGTH


def test_expression_error_is_a_value_error_and_text_must_be_a_string() -> None:
    assert issubclass(ExpressionError, ValueError)
    with pytest.raises(ExpressionError, match="expected a string"):
        Expression.parse(3, FIELDS)  # type: ignore[arg-type]


def test_evaluate_errors() -> None:
    e = Expression.parse("x + y", FIELDS)
    with pytest.raises(ExpressionError, match="column 'y' is missing"):
        e.evaluate({"x": np.zeros(2)})
    with pytest.raises(ExpressionError, match="column 'y' has 3 rows, expected 2"):
        e.evaluate({"x": np.zeros(2), "y": np.zeros(3)})
    with pytest.raises(ExpressionError, match="column 'x': expected a 1-D numeric"):
        e.evaluate({"x": np.array(["1.5", "2"]), "y": np.zeros(2)})
    with pytest.raises(ExpressionError, match="cannot tell the number of rows"):
        Expression.parse("1", FIELDS).evaluate({})


# ------------------------------------------------------------------------ no eval
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", 'unexpected character "\'" at column 12'),
        ("__import__(x)", "unknown function '__import__' at column 1"),
        ("x.real", "unexpected character '.' at column 2"),
        ("a.b", "unexpected character '.' at column 2"),
        ("().__class__", "unexpected character '.' at column 3"),
        ("x if y else n", "unexpected 'if' at column 3"),
        ("lambda: 1", "unexpected character ':' at column 7"),
        ("lambda", "unknown field 'lambda' at column 1"),
        ("open", "unknown field 'open' at column 1"),
        ("[x]", "unexpected character '[' at column 1"),
        ("x; y", "unexpected character ';' at column 2"),
    ],
)
def test_python_syntax_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        Expression.parse(text, FIELDS)


def test_module_never_uses_eval_or_pythons_ast() -> None:
    source = Path(expressions_module.__file__).read_text()
    assert not re.search(r"(?<![\w.])(eval|exec|compile)\(", source)  # re.compile is fine
    assert not re.search(r"^\s*(import ast|from ast )", source, re.MULTILINE)


# -------------------------------------------------------------- property: vs reference
# A generated tree is a nested tuple: ("num", text) | ("field", name) | ("neg" | "pos" |
# "paren", child) | ("bin", op, left, right) | ("call", name, args). It is rendered with the
# fewest parentheses its precedence needs (plus the explicit "paren" nodes), parsed by
# Expression and compared with a row-by-row evaluation of the tree in Python floats.

PROP_FIELDS = {"x": "float", "y": "float", "n": "int", "flag": "bool"}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}

numbers = st.one_of(
    st.integers(0, 1000).map(str),
    st.integers(0, 10**6).map(lambda i: repr(i / 1000)),
    st.tuples(st.integers(1, 999), st.integers(-3, 3)).map(lambda t: f"{t[0]}e{t[1]}"),
    st.integers(0, 999).map(lambda i: f".{i:03d}"),
).map(lambda s: ("num", s))
leaves = st.one_of(numbers, st.sampled_from(sorted(PROP_FIELDS)).map(lambda f: ("field", f)))


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.sampled_from(["neg", "pos", "paren"]), children),
        st.tuples(st.just("bin"), st.sampled_from(["+", "-", "*", "/"]), children, children),
        st.tuples(st.just("call"), st.sampled_from(["abs", "log"]), st.tuples(children)),
        st.tuples(st.just("call"), st.sampled_from(["min", "max"]), st.tuples(children, children)),
    )


trees = st.recursive(leaves, _extend, max_leaves=12)


def _prec(t: tuple) -> int:
    if t[0] == "bin":
        return _PREC[t[1]]
    return 3 if t[0] in ("neg", "pos") else 4


def render(t: tuple) -> str:
    kind = t[0]
    if kind in ("num", "field"):
        return str(t[1])
    if kind == "paren":
        return f"({render(t[1])})"
    if kind in ("neg", "pos"):
        inner = render(t[1])
        inner = f"({inner})" if _prec(t[1]) < 3 else inner
        return ("-" if kind == "neg" else "+") + inner
    if kind == "call":
        return f"{t[1]}({', '.join(render(a) for a in t[2])})"
    _, op, left, right = t
    p = _PREC[op]
    lhs = render(left) if _prec(left) >= p else f"({render(left)})"
    rhs = render(right) if _prec(right) > p else f"({render(right)})"  # left associative
    return f"{lhs} {op} {rhs}"


def _div(a: float, b: float) -> float:
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _log(a: float) -> float:
    if math.isnan(a) or a < 0.0:
        return math.nan
    return -math.inf if a == 0.0 else math.log(a)


def _min(a: float, b: float) -> float:  # IEEE/numpy: NaN wins, ties give the second
    return math.nan if math.isnan(a) or math.isnan(b) else (a if a < b else b)


def _max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else (a if a > b else b)


def reference(t: tuple, row: dict[str, float]) -> float:
    kind = t[0]
    if kind == "num":
        return float(t[1])
    if kind == "field":
        return row[t[1]]
    if kind in ("paren", "pos"):
        return reference(t[1], row)
    if kind == "neg":
        return -reference(t[1], row)
    if kind == "call":
        args = [reference(a, row) for a in t[2]]
        if t[1] == "abs":
            return abs(args[0])
        if t[1] == "log":
            return _log(args[0])
        return _min(*args) if t[1] == "min" else _max(*args)
    _, op, left, right = t
    a, b = reference(left, row), reference(right, row)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return _div(a, b)


values = st.one_of(st.just(0.0), st.integers(-100_000, 100_000).map(lambda i: i / 100))
rows = st.lists(
    st.fixed_dictionaries(
        {"x": values, "y": values, "n": st.integers(-1000, 1000), "flag": st.booleans()}
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(tree=trees, data=rows)
def test_evaluate_matches_reference_on_random_expressions(tree: tuple, data: list) -> None:
    text = render(tree)
    expr = Expression.parse(text, PROP_FIELDS)
    columns = {
        "x": np.array([r["x"] for r in data]),
        "y": np.array([r["y"] for r in data]),
        "n": np.array([r["n"] for r in data], dtype=np.int64),
        "flag": np.array([r["flag"] for r in data], dtype=bool),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = expr.evaluate(columns)
    expected = [reference(tree, {k: float(v) for k, v in r.items()}) for r in data]
    # + - * / are the same IEEE operations on both sides; only log may differ by an ulp
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=text)
