"""The v1 list shape: `{"items": [...], "next": CURSOR|null, "total": N}` (identity.services.paging)."""

from __future__ import annotations

from typing import Any

from fastapi import Query
from pydantic import BaseModel, Field, create_model

from identity.serialize import to_json
from identity.services.paging import Page

CURSOR = Query(None, max_length=200, description="`next` of the previous page; none: the first page")


def page_model(name: str, item: Any) -> type[BaseModel]:
    """The response model of a list of `item` (a model)."""
    model: type[BaseModel] = create_model(
        name,
        __doc__=f"A page of {item.__name__ if hasattr(item, '__name__') else 'items'}, and how to get the next.",
        items=(list[item], ...),
        next=(str | None, Field(None, description="pass as `cursor` for the next page; null on the last page")),
        total=(int, Field(..., description="how many items the query matches, on every page")),
    )
    return model


def listed(page: Page[Any]) -> dict[str, Any]:
    """A page as the route answers it (its items as `to_json` writes them)."""
    return {"items": [to_json(item) for item in page.items], "next": page.next, "total": page.total}
