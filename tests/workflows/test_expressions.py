"""${{ }} expressions: CEL values, text interpolation, errors, and no way out to Python."""

from __future__ import annotations

import pytest

from omnicore.workflows import ExpressionError
from omnicore.workflows.expressions import compile_condition, compile_value

CTX = {"inputs": {"n": 5, "names": ["ada", "bob"], "s": "x"},
       "steps": {"a": {"output": {"items": [1, 2, 3], "ok": True}, "state": "succeeded"}}}


def ev(value: object, ctx: dict[str, object] | None = None) -> object:
    return compile_value(value, "t").evaluate(ctx or CTX)


def test_a_whole_expression_keeps_its_type() -> None:
    assert ev("${{ steps.a.output.items }}") == [1, 2, 3]
    assert ev("${{ inputs.n * 2 }}") == 10
    assert ev("${{ steps.a.output.ok }}") is True
    assert ev("${{ {'k': inputs.n} }}") == {"k": 5}
    assert ev("${{ inputs.names.map(x, x + '!') }}") == ["ada!", "bob!"]


def test_expressions_inside_text_interpolate() -> None:
    assert ev("n=${{ inputs.n }}, ok=${{ steps.a.output.ok }}") == "n=5, ok=true"
    assert ev({"list": ["${{ inputs.s }}", 1], "plain": "no expr"}) == \
        {"list": ["x", 1], "plain": "no expr"}


def test_bare_conditions() -> None:
    assert compile_condition("inputs.n > 3 && size(inputs.names) == 2", "if").evaluate(CTX)
    assert compile_condition(True, "if").evaluate(CTX) is True


def test_evaluation_errors_say_where_and_why() -> None:
    with pytest.raises(ExpressionError, match=r"steps\[0\]\.with: \$\{\{ inputs\.missing \}\}: "
                                              r"no such member"):
        compile_value("${{ inputs.missing }}", "steps[0].with").evaluate(CTX)
    with pytest.raises(ExpressionError, match="divide by zero"):
        ev("${{ inputs.n / 0 }}")


@pytest.mark.parametrize("text", [
    "${{ __import__('os').system('true') }}",
    "${{ open('/etc/passwd') }}",
    "${{ inputs.__class__ }}",
])
def test_python_is_out_of_reach(text: str) -> None:
    try:
        value = compile_value(text, "t")
    except ExpressionError:
        return  # refused when compiled: the usual case
    with pytest.raises(ExpressionError):
        value.evaluate(CTX)


def test_references_are_collected() -> None:
    c = compile_value({"h": "Bearer ${{ secrets.TOKEN }}", "x": "${{ steps.a.output }}"}, "t")
    assert c.secrets == {"TOKEN"}
    assert c.steps == {"a"}


def test_nested_macros_are_refused_but_sequential_ones_are_fine() -> None:
    # A macro inside another's body costs len(list)² on a webhook's megabyte of input.
    with pytest.raises(ExpressionError, match=r"map\(\) inside another macro's body"):
        compile_value("${{ inputs.a.map(x, inputs.a.map(y, x + y)) }}", "w")
    with pytest.raises(ExpressionError, match="may not nest"):
        compile_value("${{ inputs.a.filter(x, inputs.a.exists(y, y == x)) }}", "w")
    both = compile_value("${{ inputs.a.map(x, x) + inputs.b.filter(y, y > 1) }}", "w")
    assert both.evaluate({"inputs": {"a": [1], "b": [1, 2]}}) == [1, 2]
    quoted = compile_value("${{ inputs.a.map(x, 'y.map(z, z)') }}", "w")
    assert quoted.evaluate({"inputs": {"a": [1]}}) == ["y.map(z, z)"]
