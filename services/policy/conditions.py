"""Rule conditions: JMESPath expressions over the record, checked against its schema.

JMESPath is a safe, declarative query language (no ``eval``, no side effects). At load
time every expression is parsed and walked against the record's schema so that a
typo cannot silently make a rule never (or always) match: every field must exist,
functions must exist with the right number of arguments, enum and institution
literals compared with a field must be valid, and fields whose decoded values are not
plain JSON (timestamps, dates, UUIDs, bytes) may not be used, because JMESPath cannot
compare them. Records are evaluated as fastavro decodes them, with no conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions

from services.policy.compiled import compile_ast, is_false
from services.policy.errors import ConditionError
from services.policy.tree import SchemaTree, Shape

_FUNCTIONS: Final = Functions().FUNCTION_TABLE
_NOT_A_LITERAL: Final = object()
_KEYWORDS: Final = frozenset({"null", "true", "false"})


class ConditionSyntaxError(ValueError):
    """A condition does not parse or does not fit the schema (message says where)."""


@dataclass(frozen=True, slots=True)
class _Ty:
    """What the checker knows about a sub-expression's value."""

    shape: Shape | None = None
    path: str = ""
    literal: Any = _NOT_A_LITERAL
    literals: tuple[Any, ...] | None = None


_ANY: Final = _Ty()


@dataclass(frozen=True, slots=True)
class Condition:
    """A checked, compiled JMESPath condition."""

    text: str
    fields: tuple[str, ...]  # the field paths the condition reads
    _search: Callable[[Any], Any]

    def matches(self, datum: Mapping[str, Any]) -> bool:
        """Whether the condition holds (JMESPath truthiness) for ``datum``."""
        try:
            return _truthy(self._search(datum))
        except (jmespath_errors.JMESPathError, TypeError, ValueError) as e:
            raise ConditionError(
                f"condition {self.text!r} failed: {type(e).__name__}"
            ) from e


def compile_condition(
    text: str, tree: SchemaTree, institutions: frozenset[str]
) -> Condition:
    """Parse and check ``text`` against ``tree``; raises `ConditionSyntaxError`."""
    try:
        parsed = jmespath.compile(text)
    except jmespath_errors.JMESPathError as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConditionSyntaxError(f"condition {text!r} does not parse: {detail}") from e
    checker = _Checker(tree, institutions)
    checker.check(parsed.parsed, _Ty(tree.root, ""))
    ast = parsed.parsed
    # Report the fields read, not the records passed through on the way to them.
    used = sorted(
        p for p in checker.used if not any(q.startswith(p + ".") for q in checker.used)
    )
    return Condition(text, tuple(used), compile_ast(ast))


def _truthy(value: Any) -> bool:
    # JMESPath truthiness: false, null and empty strings/lists/objects are false;
    # 0 is true (unlike Python).
    return not is_false(value)


class _Checker:
    """Walks a JMESPath AST with the schema type of the current node."""

    def __init__(self, tree: SchemaTree, institutions: frozenset[str]) -> None:
        self.tree = tree
        self.institutions = institutions
        self.used: set[str] = set()

    def check(self, node: Mapping[str, Any], ctx: _Ty) -> _Ty:
        kind = node["type"]
        children = node.get("children", [])
        handler = getattr(self, f"_{kind}", None)
        if handler is not None:
            result: _Ty = handler(node, children, ctx)
            return result
        for child in children:
            if isinstance(child, Mapping):
                self.check(child, ctx)
        return _ANY

    # -- fields and navigation -------------------------------------------------

    def _field(self, node: Mapping[str, Any], _children: list[Any], ctx: _Ty) -> _Ty:
        name = node["value"]
        shape = ctx.shape
        if shape is None:
            return _ANY
        where = ctx.path or "the record root"
        if shape.kind == "map":
            return _Ty(shape.item, f"{ctx.path}.{name}")
        if shape.kind == "array":
            raise ConditionSyntaxError(
                f"{ctx.path} is an array; write {ctx.path}[].{name} or a filter "
                f"{ctx.path}[?...] to look inside it"
            )
        if shape.kind != "record":
            raise ConditionSyntaxError(
                f"{where} is a {shape.describe}; it has no field {name}"
            )
        for child in shape.fields:
            if child.name == name:
                return self._use(child.path, child.shape)
        hint = (
            f"; write `{name}` in backticks for the JSON literal"
            if name in _KEYWORDS
            else ""
        )
        known = ", ".join(c.name for c in shape.fields)
        raise ConditionSyntaxError(
            f"{_join(ctx.path, name)} is not a field ({where} has: {known}){hint}"
        )

    def _use(self, path: str, shape: Shape) -> _Ty:
        if not shape.json_plain:
            raise ConditionSyntaxError(
                f"{path} is a {shape.describe}, which conditions cannot compare; "
                "use plain fields (enums, booleans, strings, numbers, arrays of them)"
            )
        self.used.add(path)
        return _Ty(shape, path)

    def _subexpression(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        if children and children[0].get("type") == "not_expression":
            # `!a.b` parses as `(!a).b`: a field of a boolean, always null, so the
            # condition would never hold (or always, negated again).
            raise ConditionSyntaxError(
                "`!` binds tighter than `.`: `!a.b` reads `(!a).b`, which is always "
                "null; write `!(a.b)`"
            )
        for child in children:
            ctx = self.check(child, ctx)
        return ctx

    def _pipe(self, node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        return self._subexpression(node, children, ctx)

    def _index_expression(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        return self.check(children[1], self.check(children[0], ctx))

    def _index(self, _node: Any, _children: list[Any], ctx: _Ty) -> _Ty:
        return _Ty(_item(ctx, "index into").shape, ctx.path)

    def _slice(self, _node: Any, _children: list[Any], ctx: _Ty) -> _Ty:
        _item(ctx, "slice")
        return ctx

    def _flatten(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        inner = self.check(children[0], ctx)
        item = _item(inner, "flatten ([])")
        if item.shape is not None and item.shape.kind == "array":
            return item
        return inner

    def _projection(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        element = _item(self.check(children[0], ctx), "project ([*])")
        return _array_of(self.check(children[1], element))

    def _filter_projection(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        element = _item(self.check(children[0], ctx), "filter ([?...])")
        self.check(children[2], element)
        return _array_of(self.check(children[1], element))

    def _value_projection(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        left = self.check(children[0], ctx)
        shape = left.shape
        element = _Ty(shape.item, left.path) if shape and shape.kind == "map" else _ANY
        self.check(children[1], element)
        return _ANY

    def _identity(self, _node: Any, _children: list[Any], ctx: _Ty) -> _Ty:
        return ctx

    def _current(self, _node: Any, _children: list[Any], ctx: _Ty) -> _Ty:
        return ctx

    # -- values and operators -------------------------------------------------------

    def _literal(self, node: Mapping[str, Any], _children: list[Any], _ctx: _Ty) -> _Ty:
        return _Ty(literal=node["value"])

    def _multi_select_list(self, _node: Any, children: list[Any], ctx: _Ty) -> _Ty:
        items = [self.check(child, ctx) for child in children]
        if items and all(i.literal is not _NOT_A_LITERAL for i in items):
            return _Ty(literals=tuple(i.literal for i in items))
        return _ANY

    def _comparator(self, node: Mapping[str, Any], children: list[Any], ctx: _Ty) -> _Ty:
        left, right = (self.check(child, ctx) for child in children)
        if node["value"] in ("eq", "ne"):
            self._compare(left, right)
            self._compare(right, left)
        return _ANY

    def _function_expression(
        self, node: Mapping[str, Any], children: list[Any], ctx: _Ty
    ) -> _Ty:
        name = node["value"]
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise ConditionSyntaxError(
                f"unknown function {name}(); JMESPath has: "
                f"{', '.join(sorted(_FUNCTIONS))}"
            )
        signature = spec["signature"]
        variadic = any(arg.get("variadic") for arg in signature)
        if (len(children) < len(signature)) or (
            not variadic and len(children) > len(signature)
        ):
            raise ConditionSyntaxError(
                f"{name}() takes {len(signature)} argument(s), got {len(children)}"
            )
        args = [self.check(child, ctx) for child in children]
        if name == "contains" and len(args) == 2:
            haystack, needle = args
            if haystack.literals is not None:
                for value in haystack.literals:
                    self._compare(needle, _Ty(literal=value))
            elif haystack.shape is not None and haystack.shape.kind == "array":
                self._compare(_Ty(haystack.shape.item, haystack.path), needle)
        return _ANY

    def _expref(self, _node: Any, children: list[Any], _ctx: _Ty) -> _Ty:
        # The element type of the argument an expref applies to is not tracked.
        for child in children:
            self.check(child, _ANY)
        return _ANY

    def _compare(self, field: _Ty, other: _Ty) -> None:
        value = other.literal
        if field.shape is None or not isinstance(value, str):
            return
        if field.shape.kind == "enum" and value not in field.shape.symbols:
            raise ConditionSyntaxError(
                f"{field.path} is never {value!r}; its symbols are "
                f"{', '.join(field.shape.symbols)}"
            )
        if field.path.endswith("_institution_id") and value not in self.institutions:
            raise ConditionSyntaxError(
                f"{field.path} is compared with unknown institution {value!r}"
            )


def _item(ctx: _Ty, action: str) -> _Ty:
    shape = ctx.shape
    if shape is None:
        return _ANY
    if shape.kind != "array" or shape.item is None:
        raise ConditionSyntaxError(
            f"cannot {action} {ctx.path or 'the record'}: it is a {shape.describe}, "
            "not an array"
        )
    return _Ty(shape.item, ctx.path)


def _array_of(element: _Ty) -> _Ty:
    if element.shape is None:
        return _ANY
    return _Ty(Shape("array", item=element.shape), element.path)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
