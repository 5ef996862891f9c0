"""The API's response models, derived from the services' result dataclasses and their JSON metadata.

A dataclass stays the one list of a result's fields: its JSON names, flattened parts, skipped
fields and keys that may be absent (identity.serialize) give the model's fields, in the order
`to_json` writes them, so `/openapi.json` states what the answer holds. Only the types named in
`types` (by JSON key) differ: nested results as their derived models, a whole (type, Field(...))
where the API states more, None for a key the model leaves out; a (type, Field(...)) for a key
the dataclass lacks is added after its fields.
"""

from __future__ import annotations

import dataclasses
import keyword
import types as pytypes
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Field, create_model

from identity.serialize import JsonField, field_spec


def derived(name: str, source: type, doc: str | None = None, **types: Any) -> type[BaseModel]:
    """A model of `source`'s JSON; `doc` (default: the dataclass's own docstring) describes it."""
    fields: dict[str, Any] = {python: given for python, given in _fields(source, types) if given[0] is not None}
    fields.update({key: given for key, given in types.items() if key not in _keys(source)})  # the API's own, last
    model: type[BaseModel] = create_model(name, __doc__=doc if doc is not None else _doc(source), **fields)
    return model


def _fields(source: type, types: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, Any]]]:
    hints = get_type_hints(source)
    for field in dataclasses.fields(source):
        spec = field_spec(field)
        if spec.skip:
            continue
        if spec.flatten:
            yield from _fields(_part(spec, hints[field.name]), types)
            continue
        key = spec.name or field.name
        given = types.get(key, hints[field.name])
        # A JSON key that is no Python name ("from") is the field `from_`, aliased to the key.
        python = key if key.isidentifier() and not keyword.iskeyword(key) else key + "_"
        if isinstance(given, tuple):  # the API states the whole field
            yield python, given
        else:
            default = None if spec.optional else ...
            yield python, (given, Field(default, description=spec.doc, alias=None if python == key else key))


def _keys(source: type) -> set[str]:
    """Every JSON key of `source` (flattened parts included)."""
    hints = get_type_hints(source)
    keys: set[str] = set()
    for field in dataclasses.fields(source):
        spec = field_spec(field)
        keys |= _keys(_part(spec, hints[field.name])) if spec.flatten else {spec.name or field.name}
    return keys


def _part(spec: JsonField, hint: Any) -> type:
    """The dataclass a flattened field is written as: its encoder's result, else its own type."""
    return get_type_hints(spec.encode)["return"] if spec.encode else _without_none(hint)


def _without_none(hint: Any) -> type:
    if get_origin(hint) in (Union, pytypes.UnionType):
        [kind] = [arg for arg in get_args(hint) if arg is not type(None)]
        return kind  # type: ignore[no-any-return]
    return hint  # type: ignore[no-any-return]


def _doc(source: type) -> str | None:
    """The dataclass's docstring, unless it is the one dataclasses generates (a field list)."""
    doc = source.__doc__ or ""
    return None if doc.startswith(f"{source.__name__}(") else doc or None
