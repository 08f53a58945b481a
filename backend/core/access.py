"""The one access rule: a row that belongs to a user is visible only to that user (admins see all;
billing admins also see every cost record). Every service uses these helpers."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from backend.core.errors import NotFound
from backend.core.schemas import UserInfo


def scope(stmt: Select, model: Any, actor: UserInfo, *, costs: bool = False) -> Select:
    """Restrict ``stmt`` to the rows ``actor`` may see."""
    if actor.is_admin or (costs and actor.sees_all_costs):
        return stmt
    return stmt.where(model.user_id == actor.id)


def check_owner(actor: UserInfo, row: Any, what: str, object_id: str) -> None:
    """Raise NotFound unless ``actor`` owns ``row`` or is an admin.

    Someone else's object is reported as not found, so ids of other users' objects leak nothing.
    """
    if row is None or getattr(row, "deleted_at", None) is not None:
        raise NotFound(f"{what} {object_id} not found", code=f"{what.lower()}_not_found")
    if actor.is_admin or row.user_id == actor.id:
        return
    raise NotFound(f"{what} {object_id} not found", code=f"{what.lower()}_not_found")
