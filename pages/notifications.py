"""Notifications: job complete / failed, dataset ready / failed, cost alerts. Mark read, mark all
read, unread only, and a link to the object each one is about."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import streamlit as st

from app.auth import current_user
from app.ui.widgets import PAGES_DIR, badge_markdown, fmt_time, handled, literal, page_path, show_error
from backend import notifications as nt
from backend.core.errors import BrightRunError


def _target(action_url: str | None) -> tuple[str, dict] | None:
    """('/datasets?id=X') → (page file, {'id': 'X'}) when it names one of our pages."""
    if not action_url:
        return None
    parts = urlsplit(action_url)
    stem = parts.path.strip("/").split("/", 1)[0]
    if not stem or not (PAGES_DIR / f"{stem}.py").is_file():
        return None
    return page_path(stem), dict(parse_qsl(parts.query))


def _mark_read(actor, notification_id: str) -> None:
    try:
        nt.mark_read(actor, notification_id)
    except BrightRunError as exc:
        st.session_state["notifications_error"] = exc


def _mark_all(actor) -> None:
    try:
        count = nt.mark_all_read(actor)
    except BrightRunError as exc:
        st.session_state["notifications_error"] = exc
        return
    st.session_state["notifications_done"] = f"Marked {count} notification(s) as read."


def _row(actor, n) -> None:
    with st.container(border=True):
        c = st.columns([1.1, 6, 1.4, 1.2], vertical_alignment="center")
        c[0].markdown(badge_markdown(n.priority))
        title = literal(n.title)
        c[1].markdown(f"**{title}**" if not n.read else title)
        c[1].markdown(literal(n.message))
        c[1].caption(f"{fmt_time(n.created_at)} · {literal(n.type.replace('_', ' '))}"
                     + ("" if n.read else " · unread"))
        target = _target(n.action_url)
        if target:
            c[2].page_link(target[0], label="Open", icon=":material/open_in_new:",
                           query_params=target[1])
        if not n.read:
            c[3].button("Mark read", key=f"notifications_read_{n.id}", on_click=_mark_read,
                        args=(actor, n.id))


def main() -> None:
    actor = current_user()
    st.title("Notifications")
    error = st.session_state.pop("notifications_error", None)
    if error is not None:
        show_error(error)
    done = st.session_state.pop("notifications_done", None)
    if done:
        st.success(done)
    with handled():
        unread = nt.unread_count(actor)
        c = st.columns([2, 2, 4], vertical_alignment="center")
        unread_only = c[0].toggle("Unread only", key="notifications_unread_only")
        c[1].button("Mark all read", key="notifications_mark_all", on_click=_mark_all,
                    args=(actor,), disabled=unread == 0, icon=":material/done_all:")
        c[2].markdown(f"{unread} unread")
        items = nt.list_notifications(actor, unread_only=unread_only)
        if not items:
            st.info("No unread notifications." if unread_only else
                    "No notifications yet — you will hear here when a dataset is validated, a "
                    "job finishes or a budget alert fires.", icon=":material/notifications:")
        for n in items:
            _row(actor, n)


main()
