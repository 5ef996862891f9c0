"""The one serializer of typed results: `to_json(obj)` gives the plain JSON data a script reads.

It walks dataclasses (fields in declaration order), enums (their value), uuids and paths (text),
dates and times (ISO 8601), lists, tuples, sets and dicts. A field's JSON shape is stated where
the field is declared, with `field(metadata=json_field(...))`:

    name           the key it is written under (default: the field's name)
    omit_if_none   no key at all when the value is None
    omit_if_falsy  no key when the value is falsy (False, 0, empty)
    skip           never written (kept for the code, e.g. eval's ranked cohort)
    encode         a function of the value, applied before walking it (a rounding, a count)
    flatten        the value (a dataclass, or None: nothing) is written as its keys, in place
    doc            what the key means, for readers of the schema (the API's models derive from the fields)

A class whose JSON is a summary rather than its fields (the doctor's report) defines
`__json__(self)` returning the object (a dataclass) to write instead.
This module is a low layer: anything may import it, it imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from pathlib import PurePath
from typing import Any

_KEY = "identity.json"


@dataclass(frozen=True)
class JsonField:
    name: str | None = None
    omit_if_none: bool = False
    omit_if_falsy: bool = False
    skip: bool = False
    encode: Callable[[Any], Any] | None = None
    flatten: bool = False
    doc: str | None = None

    @property
    def optional(self) -> bool:
        """Whether the key may be absent."""
        return self.omit_if_none or self.omit_if_falsy


def json_field(
    *,
    name: str | None = None,
    omit_if_none: bool = False,
    omit_if_falsy: bool = False,
    skip: bool = False,
    encode: Callable[[Any], Any] | None = None,
    flatten: bool = False,
    doc: str | None = None,
) -> dict[str, JsonField]:
    """A field's metadata for `to_json` (see the module's doc)."""
    return {_KEY: JsonField(name, omit_if_none, omit_if_falsy, skip, encode, flatten, doc)}


def field_spec(field: dataclasses.Field[Any]) -> JsonField:
    """How `to_json` writes a dataclass field (its defaults when the field states nothing)."""
    spec = field.metadata.get(_KEY)
    return spec if isinstance(spec, JsonField) else JsonField()


def to_json(obj: Any) -> Any:
    """`obj` as JSON-able data: dicts, lists, strings, numbers, booleans and None."""
    custom = getattr(type(obj), "__json__", None)
    if custom is not None:
        return to_json(custom(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _fields(obj)
    if isinstance(obj, Enum):
        return to_json(obj.value)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (uuid.UUID, PurePath)):
        return str(obj)
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {_key(key): to_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json(item) for item in obj]
    return obj  # anything else (a numpy scalar) as it is: json.dumps decides


def _fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        spec = field_spec(field)
        value = getattr(obj, field.name)
        if spec.skip or (spec.omit_if_none and value is None) or (spec.omit_if_falsy and not value):
            continue
        if spec.encode is not None:
            value = spec.encode(value)
        if spec.flatten:
            if value is not None:
                out.update(to_json(value))
            continue
        out[spec.name or field.name] = to_json(value)
    return out


def _key(key: Any) -> Any:
    if isinstance(key, Enum):
        return key.value
    return str(key) if isinstance(key, uuid.UUID) else key
