"""Request bodies: every string a client sends in a JSON body is text the store can hold.

PostgreSQL refuses a NUL byte (``\\u0000``) in ``text`` and in ``jsonb``; a body field that
carried one to the database used to be answered 503 "the job store is unavailable" with an
ERROR log (e.g. a webhook's ``description``). Every request body model derives from
:class:`RequestBody`, which refuses such a value in any field, at any depth (strings inside
lists and objects, and object keys), with **422** naming the field (FastAPI's ``loc``
``["body", "<field>"]`` and the message), before the route runs. ``tests/api/test_ids.py``
walks the route table: a route whose body model is not a :class:`RequestBody` fails it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator

__all__ = ["RequestBody", "has_nul"]


def has_nul(value: object) -> bool:
    """Whether ``value`` (JSON as Python: str, list, dict, numbers, ...) holds a NUL byte in
    any string, at any depth (walked without recursion: nesting depth costs no stack)."""
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
    return False


class RequestBody(BaseModel):
    """Base of the API's request body models: no field may hold a NUL byte (422)."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        if has_nul(value):
            raise ValueError(
                f"{info.field_name} contains a NUL byte (\\u0000), which cannot be stored"
            )
        return value
