"""Typed configuration machinery: how params.yaml's mappings become dataclasses.

`from_dict` builds a dataclass from a mapping, rejecting unknown keys and values of the wrong
type; each dataclass checks its ranges in `__post_init__` with `require`. Problems that do not
depend on each other are collected (`Problems`), so one ConfigError lists them all, one line
each. The sections themselves are in `pipeline.sections`, the assembly of a whole params file
in `pipeline.config`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Callable


class ConfigError(ValueError):
    """A params file is wrong; the message names the key and the fix (one line per problem)."""


# inside `Problems.recording()`: where `require` records a failed check and goes on, so that
# checks which do not depend on each other (a dataclass's ranges, the grid's references) all report
_RECORDING: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("config_recording", default=None)


def require(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError for `key` unless `ok` (inside `Problems.recording()`: record it)."""
    if ok:
        return
    problem = f"params: '{key}' {message}"
    found = _RECORDING.get()
    if found is None:
        raise ConfigError(problem)
    found.append(problem)


class Problems:
    """The independent problems of a params file, collected so that one error lists them all."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, error: ConfigError) -> None:
        for line in str(error).splitlines():
            if line not in self.lines:  # a shared cause is listed once
                self.lines.append(line)

    @contextlib.contextmanager
    def recording(self):
        """Within the block, `require` records a failed check here instead of raising: only
        around checks that do not depend on each other (never around from_dict's parsing)."""
        found: list[str] = []
        token = _RECORDING.set(found)
        try:
            yield
        finally:
            _RECORDING.reset(token)
            self.add(ConfigError("\n".join(found)))

    @contextlib.contextmanager
    def check(self):
        """Record a ConfigError raised in the block instead of stopping at it."""
        try:
            yield
        except ConfigError as e:
            self.add(e)

    def parse(self, build: Callable[[], Any]) -> Any:
        """build(), or None with its ConfigError recorded."""
        try:
            return build()
        except ConfigError as e:
            self.add(e)
            return None

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"params: '{key}' = {value!r} has the wrong type; expected {hint}")
    if origin is typing.Literal:
        require(value in args, key, f"= {value!r} is not allowed; choose one of {list(args)}")
        return value
    if origin in (list, tuple):
        require(isinstance(value, (list, tuple)), key, f"= {value!r} must be a list")
        inner = args[0] if args else Any
        problems, out = Problems(), []
        for i, v in enumerate(value):
            with problems.check():
                out.append(_coerce(v, inner, f"{key}[{i}]"))
        problems.raise_if_any()
        return tuple(out) if origin is tuple else out
    if origin is dict:
        require(isinstance(value, dict), key, f"= {value!r} must be a mapping")
        kt, vt = args if args else (Any, Any)
        problems, out = Problems(), {}
        for k, v in value.items():
            with problems.check():
                out[coerce_key(k, kt, key)] = _coerce(v, vt, f"{key}.{k}")
        problems.raise_if_any()
        return out
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is Any:
        return value
    if hint is bool:
        require(isinstance(value, bool), key, f"= {value!r} must be true or false")
        return value
    if hint is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, f"= {value!r} must be an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 2e-4 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        require(is_number, key, f"= {value!r} must be a number")
        require(not is_number or math.isfinite(value), key, f"= {value!r} must be a finite number")
        return float(value)
    if hint is str:
        require(isinstance(value, str), key, f"= {value!r} must be a string")
        return value
    return value


def coerce_key(name: Any, hint: Any, where: str) -> Any:
    """A mapping's key: YAML reads `1:` or `true:` as a number or a bool where a name belongs."""
    if hint is str:
        require(isinstance(name, str), f"{where}.{name}",
                f"has a name of type {type(name).__name__}; names are strings: quote it ('{name}')")
        return name
    return _coerce(name, hint, f"{where}.{name}")


def from_dict(cls: type, data: dict | None, where: str) -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys; `where` prefixes key names.

    Every unknown key, wrong type and failed range check is reported (one line each) in one
    ConfigError."""
    data = {} if data is None else data
    require(isinstance(data, dict), where, f"must be a mapping of {cls.__name__} fields, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    problems, kwargs = Problems(), {}
    for key, value in data.items():
        with problems.check():
            require(key in names, f"{where}.{key}", f"is not a known key; allowed keys of '{where}': {sorted(names)}")
            kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    # the range checks run on the well-typed keys too (a bad key keeps its default meanwhile)
    built = problems.parse(lambda: _construct(cls, kwargs, where))
    problems.raise_if_any()
    return built


def _construct(cls: type, kwargs: dict, where: str) -> Any:
    """cls(**kwargs), reporting every range check of its __post_init__ that fails."""
    checks = Problems()
    try:
        with checks.recording():
            obj = cls(**kwargs)
    except TypeError as e:  # a required field is missing
        checks.add(ConfigError(f"params: '{where}' is incomplete: {e}"))
    except ConfigError as e:  # methods' configs raise their checks directly
        checks.add(e)
    if checks.lines:
        raise ConfigError("\n".join(_locate(line, where) for line in checks.lines))
    return obj


def _locate(message: str, where: str) -> str:
    """Name the entry in a dataclass's generic message: 'models.*.lr' -> 'models.vae.lr',
    and 'train.iterations' -> 'models.vae.train.iterations' for a model's train overrides."""
    parent, _, last = where.rpartition(".")
    if not parent:
        return message
    return message.replace(f"'{parent}.*", f"'{where}").replace(f"'{last}.", f"'{where}.")


def to_dict(obj: Any) -> dict:
    """A dataclass as a plain dict (the inverse of from_dict)."""
    return dataclasses.asdict(obj)


def stable_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serialisable object (dataclasses allowed), key order ignored."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
