"""The typed check behind the recipe schema: a mapping read from YAML against dataclass annotations.

`build(cls, data, prefix)` checks every value against its annotation and builds the dataclasses. An
unknown key, a missing required key or a wrong type is a `RecipeError` naming the dotted key; booleans
must be real YAML booleans (the reference's `type=bool` flags read "False" as true); numbers are
checked against their `Bounds`; names of models, refinement strategies and mixes against the registry
that holds them (`OneOf`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Literal


class RecipeError(ValueError):
    """A recipe problem; the message names the file and the dotted key."""


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in (checked with its type; the error names the key)."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded

    def check(self, value, key: str) -> None:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise RecipeError(f"{key}: {value!r} must be {'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None and value > self.hi:
            raise RecipeError(f"{key}: {value!r} must be <= {self.hi:g}")


@dataclass(frozen=True)
class OneOf:
    """A name that must be registered in a `vdatrain.registry.Registry`; `table` returns it (imported lazily:
    the tables live beside the models and methods, which import torch)."""
    table: typing.Callable

    def check(self, value, key: str) -> None:
        table = self.table()
        if value not in table:
            raise RecipeError(f"{key}: {value!r} is not a registered {table.kind} (choose from {', '.join(table)})")


def check_value(value, annotation, key: str):
    """Return `value` converted to `annotation` (tuples from lists, ints as floats), or raise naming `key`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        value = check_value(value, args[0], key)
        for rule in args[1:]:  # Bounds, OneOf
            rule.check(value, key)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return check_value(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {type(value).__name__}")
        return build(annotation, value, key)
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) != len(value) and not (len(args) == 2 and args[1] is Ellipsis):
            raise RecipeError(f"{key}: expected {len(args)} values, got {len(value)}")
        inner = args if origin is tuple else args * len(value)
        items = [check_value(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, inner))]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise RecipeError(f"{key}: {value!r} is not a finite number")
        return float(value)
    if annotation in (int, str):
        if isinstance(value, bool) or not isinstance(value, annotation):
            raise RecipeError(f"{key}: expected {annotation.__name__}, got {value!r}")
        return value
    raise RecipeError(f"{key}: unsupported schema type {annotation}")


def build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise RecipeError(f"{where}{unknown[0]}: unknown key (known here: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            values[name] = check_value(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{key}: required")
    return cls(**values)
