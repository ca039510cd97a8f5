"""Strict conversion of plain YAML data into frozen dataclasses.

Every config object in the suite is a frozen dataclass: a params file must spell out every value,
unknown keys are errors, and each problem is reported as one line naming the file, the key, the
value and what is allowed. The one exception is a field with a default: a feature that is off
unless a file names it (a loop's synthesis-only warm-up, a cosine schedule's floor, a method's
display name), which a file may leave out; a resolved run config still spells it out.

Range checks live next to the field they guard, as dataclass field metadata:

    epochs: int = field(metadata=positive)
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from dfkd.errors import ConfigError

T = TypeVar("T")

positive = {"check": "positive"}
non_negative = {"check": "non_negative"}
probability = {"check": "probability"}

_CHECKS = {
    "positive": (lambda v: v > 0, "a number > 0"),
    "non_negative": (lambda v: v >= 0, "a number >= 0"),
    "probability": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}


# Bounded: a value built from YAML aliases (a "billion laughs" file) can stand for billions of
# entries that a plain repr() would write out.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 4, 4, 4
_REPR.maxstring = _REPR.maxother = 50


def _describe(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.source}: {key or '(top level)'}: {message}")


def _convert(value: Any, annotation: Any, key: str, problems: _Problems) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        return _convert(value, others[0], key, problems)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            problems.add(key, f"got {_describe(value)}; allowed: {choices}")
        return value
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key, problems)
    if annotation is bool:
        if not isinstance(value, bool):
            problems.add(key, f"expected true or false, got {_describe(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(key, f"expected an integer, got {_describe(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(key, f"expected a number, got {_describe(value)}")
            return value
        return float(value)
    if annotation is str:
        if not isinstance(value, str) or not value:
            problems.add(key, f"expected a non-empty string, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.add(key, f"expected a list, got {_describe(value)}")
            return value
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", problems) for i, v in enumerate(value))
        if len(value) != len(args):
            problems.add(key, f"expected a list of {len(args)} values, got {_describe(value)}")
            return tuple(value)
        return tuple(
            _convert(v, a, f"{key}[{i}]", problems)
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.add(key, f"expected a mapping, got {_describe(value)}")
            return value
        return {
            _convert(k, args[0], key, problems): _convert(v, args[1], _join(key, k), problems)
            for k, v in value.items()
        }
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _build(cls: type[T], data: Any, where: str, problems: _Problems) -> T:
    if not isinstance(data, Mapping):
        problems.add(where, f"expected a mapping, got {_describe(data)}")
        return None  # type: ignore[return-value]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    found_before = len(problems.lines)  # problems elsewhere in the file do not hide this one's
    for name in data:
        if name not in fields:
            allowed = ", ".join(fields)
            problems.add(_join(where, name), f"unknown key; allowed keys: {allowed}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key = _join(where, name)
        if name not in data:
            if field.default is field.default_factory is dataclasses.MISSING:
                problems.add(key, "missing")
            continue
        before = len(problems.lines)
        value = _convert(data[name], hints[name], key, problems)
        check = field.metadata.get("check")
        if check and len(problems.lines) == before and value is not None:
            accept, allowed = _CHECKS[check]
            if not accept(value):
                problems.add(key, f"got {_describe(value)}; expected {allowed}")
        values[name] = value
    if len(problems.lines) > found_before:
        return None  # type: ignore[return-value]
    try:
        return cls(**values)
    except ValueError as error:  # cross-field checks in __post_init__
        problems.add(where, str(error))
        return None  # type: ignore[return-value]


def from_dict(cls: type[T], data: Any, source: str, where: str = "") -> T:
    """Builds `cls` from plain data or raises one ConfigError listing every problem, one per line.

    `source` names the file (or other origin) in the messages; `where` is the key path of `data`
    inside it.
    """
    problems = _Problems(source)
    result = _convert(data, cls, where, problems)
    if problems.lines:
        raise ConfigError("\n".join(problems.lines))
    return result


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-ready data (tuples become lists) of a dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
