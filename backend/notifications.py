"""Notifications: job complete / failed, dataset ready / failed, cost alerts."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.core.access import check_owner, scope
from backend.core.schemas import NotificationInfo, UserInfo
from backend.db.models import Notification
from backend.db.session import session_scope

TYPES = ("job_complete", "job_failed", "cost_alert", "dataset_ready", "dataset_failed", "system")
PRIORITIES = ("low", "medium", "high", "critical")


def notify(s: Session, user_id: str, type_: str, title: str, message: str, *,
           priority: str = "medium", action_url: str | None = None,
           metadata: dict | None = None) -> None:
    """Add a notification inside the caller's session (so it commits with the change it reports)."""
    assert type_ in TYPES and priority in PRIORITIES
    s.add(Notification(user_id=user_id, type=type_, title=title[:300], message=message,
                       priority=priority, action_url=action_url, metadata_=metadata))


def list_notifications(actor: UserInfo, *, unread_only: bool = False,
                       limit: int = 100) -> list[NotificationInfo]:
    """The actor's own notifications, newest first (admins too see only their own)."""
    with session_scope() as s:
        stmt = select(Notification).where(Notification.user_id == actor.id)
        if unread_only:
            stmt = stmt.where(Notification.read.is_(False))
        stmt = stmt.order_by(Notification.created_at.desc()).limit(limit)
        return [NotificationInfo.model_validate(r) for r in s.scalars(stmt)]


def unread_count(actor: UserInfo) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == actor.id, Notification.read.is_(False))) or 0


def mark_read(actor: UserInfo, notification_id: str) -> None:
    """Raises NotFound for someone else's or an unknown notification."""
    with session_scope() as s:
        row = s.get(Notification, notification_id)
        if row is not None and row.user_id != actor.id:
            row = None
        check_owner(actor, row, "Notification", notification_id)
        row.read = True


def mark_all_read(actor: UserInfo) -> int:
    with session_scope() as s:
        res = s.execute(update(Notification).where(Notification.user_id == actor.id,
                                                   Notification.read.is_(False)).values(read=True))
        return res.rowcount or 0


__all__ = ["notify", "list_notifications", "unread_count", "mark_read", "mark_all_read", "scope"]
