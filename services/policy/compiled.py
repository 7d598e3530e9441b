"""JMESPath ASTs turned into nested closures (no ``eval``), for the router's hot path.

jmespath parses every condition; this module only replaces the interpreter's
per-node dispatch for the node types rule conditions are made of (fields, paths,
literals, comparisons, ``&&``, ``||``, ``!``, function calls), with the same
semantics as jmespath's `TreeInterpreter`. Any other node (filters, projections,
slices, ...) is evaluated by that interpreter itself. A property test holds the
two equal on every shipped condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Number
from typing import Any, Final

from jmespath.functions import Functions
from jmespath.visitor import TreeInterpreter

Fn = Callable[[Any], Any]
Node = Mapping[str, Any]

_INTERPRETER: Final = TreeInterpreter()
_FUNCTIONS: Final = Functions()
_COMPARE: Final = TreeInterpreter.COMPARATOR_FUNC


def compile_ast(node: Node) -> Fn:
    """A function computing what ``TreeInterpreter().visit(node, value)`` does."""
    maker = _MAKERS.get(node["type"])
    if maker is None:
        raw: Any = node  # the parser's own node type
        return lambda value: _INTERPRETER.visit(raw, value)
    return maker(node)


def is_false(value: Any) -> bool:
    """JMESPath falseness: false, null, and empty strings, lists and objects."""
    return value is None or value is False or value in ("", [], {})


def _field(node: Node) -> Fn:
    name = node["value"]

    def field(value: Any) -> Any:
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _subexpression(node: Node) -> Fn:
    children = node["children"]
    if all(c["type"] == "field" for c in children):
        names = tuple(c["value"] for c in children)

        def path(value: Any) -> Any:
            for name in names:
                try:
                    value = value.get(name)
                except AttributeError:
                    return None
            return value

        return path
    steps = tuple(compile_ast(c) for c in children)

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _literal(node: Node) -> Fn:
    constant = node["value"]
    return lambda _value: constant


def _current(_node: Node) -> Fn:
    return lambda value: value


def _comparator(node: Node) -> Fn:
    op = node["value"]
    compare = _COMPARE[op]
    left, right = (compile_ast(c) for c in node["children"])
    if op in ("eq", "ne"):
        return lambda value: compare(left(value), right(value))

    def order(value: Any) -> Any:
        # Ordering is defined for numbers and strings only; anything else is null.
        a, b = left(value), right(value)
        if not (_comparable(a) and _comparable(b)):
            return None
        return compare(a, b)

    return order


def _comparable(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, Number) and not isinstance(value, bool)
    )


def _and(node: Node) -> Fn:
    left, right = (compile_ast(c) for c in node["children"])

    def both(value: Any) -> Any:
        matched = left(value)
        return matched if is_false(matched) else right(value)

    return both


def _or(node: Node) -> Fn:
    left, right = (compile_ast(c) for c in node["children"])

    def either(value: Any) -> Any:
        matched = left(value)
        return right(value) if is_false(matched) else matched

    return either


def _not(node: Node) -> Fn:
    (inner,) = (compile_ast(c) for c in node["children"])

    def negate(value: Any) -> bool:
        result = inner(value)
        number = isinstance(result, int | float) and not isinstance(result, bool)
        if number and result == 0:
            return False  # !0 is false: 0 is not special in JMESPath
        return not result

    return negate


def _function(node: Node) -> Fn:
    name = node["value"]
    args = tuple(compile_ast(c) for c in node["children"])
    return lambda value: _FUNCTIONS.call_function(name, [a(value) for a in args])


_MAKERS: Final[Mapping[str, Callable[[Node], Fn]]] = {
    "field": _field,
    "subexpression": _subexpression,
    "literal": _literal,
    "current": _current,
    "identity": _current,
    "comparator": _comparator,
    "and_expression": _and,
    "or_expression": _or,
    "not_expression": _not,
    "function_expression": _function,
}
