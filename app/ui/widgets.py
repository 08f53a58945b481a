"""Shared dashboard widgets: literal text, status badges, error display, page paths, sidebar.

Everything that shows text a user typed (dataset names, descriptions, notification messages,
conversation content) goes through :func:`literal` so markdown and HTML in it are shown as typed.
"""
from __future__ import annotations

import string
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import streamlit as st

from backend.core.errors import BrightRunError

ROOT = Path(__file__).resolve().parents[2]
PAGES_DIR = ROOT / "pages"

# status -> (badge colour, material icon)
_BADGES = {
    "uploading": ("blue", "upload"),
    "validating": ("blue", "hourglass_top"),
    "ready": ("green", "check_circle"),
    "error": ("red", "error"),
    "queued": ("gray", "schedule"),
    "initializing": ("blue", "hourglass_top"),
    "running": ("orange", "play_circle"),
    "completed": ("green", "check_circle"),
    "failed": ("red", "error"),
    "cancelled": ("gray", "cancel"),
    "stored": ("gray", "inventory_2"),
    "deployed": ("green", "rocket_launch"),
    "archived": ("gray", "archive"),
    "low": ("gray", "info"),
    "medium": ("blue", "info"),
    "high": ("orange", "warning"),
    "critical": ("red", "report"),
}
_ESCAPED = set(string.punctuation)
FORMAT_LABELS = {"brightrun_lora_v4": "BrightRun v4", "brightrun_lora_v3": "BrightRun v3 (legacy)",
                 "openai_chat": "OpenAI chat", "sharegpt": "ShareGPT", "alpaca": "Alpaca"}


def literal(text: object) -> str:
    """Markdown that displays ``text`` exactly as typed: every ASCII punctuation character is
    backslash-escaped (no emphasis, links, HTML, LaTeX or ``:colour[...]`` directives), newlines
    become hard line breaks and leading spaces are kept (no accidental code blocks)."""
    if text is None:
        return ""
    lines = []
    for line in str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        escaped = "".join("\\" + ch if ch in _ESCAPED else ch for ch in body)
        lines.append("&nbsp;" * indent + escaped)
    return "  \n".join(lines)


def badge_markdown(status: str | None) -> str:
    """A coloured badge for a status value (dataset, job, model, priority)."""
    value = status or "unknown"
    colour, icon = _BADGES.get(value, ("gray", "help"))
    return f":{colour}-badge[:material/{icon}: {literal(value)}]"


def format_label(fmt: str | None) -> str:
    """People's name of a dataset format id ('brightrun_lora_v4' → 'BrightRun v4')."""
    if not fmt:
        return "—"
    return FORMAT_LABELS.get(fmt, fmt)


def error_text(exc: BrightRunError) -> str:
    """The message, then what to do about it, escaped, with any secret it quotes masked."""
    from backend.core.config import mask_secrets

    text = literal(mask_secrets(exc.message))
    if exc.hint:
        text += "  \n" + literal(mask_secrets(exc.hint))
    return text


def show_error(exc: BrightRunError) -> None:
    """A BrightRunError as a red box: the message, then what to do about it. Never a traceback."""
    st.error(error_text(exc), icon=":material/error:")


def show_warning(exc: BrightRunError) -> None:
    """A BrightRunError that is expected in normal use (e.g. a Conflict) as a yellow box."""
    st.warning(error_text(exc), icon=":material/warning:")


@contextmanager
def handled(*, warn: tuple[type[BrightRunError], ...] = ()) -> Iterator[None]:
    """Run a block; a BrightRunError raised in it is shown (warning for ``warn`` types, else
    error) instead of stopping the page."""
    try:
        yield
    except warn as exc:
        show_warning(exc)
    except BrightRunError as exc:
        show_error(exc)


def open_detail(object_id: str | None, confirm_key: str) -> None:
    """Show one object's detail (``?id=``) or the list (None); a pending delete confirmation
    (``confirm_key`` in session state) is dropped either way."""
    if object_id:
        st.query_params["id"] = object_id
    else:
        st.query_params.pop("id", None)
    st.session_state.pop(confirm_key, None)


def page_path(name: str) -> str:
    """Absolute path of a page file (what st.switch_page / st.page_link accept)."""
    return str(PAGES_DIR / f"{name}.py")


def fmt_int(value: int | float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def fmt_float(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def fmt_bytes(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"


NBSP = "\u00a0"


def fmt_time(when: datetime | None) -> str:
    """A timestamp in the viewer's terms: 'just now', '5 min ago', or a UTC date-time; joined by
    no-break spaces, so a narrow column never wraps it onto two lines."""
    if when is None:
        return "—"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (datetime.now(timezone.utc) - when).total_seconds()
    if seconds < 60:
        text = "just now"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min ago"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h ago"
    else:
        text = when.strftime("%Y-%m-%d %H:%M UTC")
    return text.replace(" ", NBSP)


def short_label(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis ('Customer support tickets f…'), for
    places that would otherwise clip it silently; the full text belongs in a tooltip."""
    text = str(text)
    return text if len(text) <= limit else text[:max(1, limit - 1)].rstrip() + "…"


def sidebar_unread(actor, notifications_page) -> None:
    """'Notifications (N unread)' link in the sidebar."""
    from backend import notifications

    try:
        count = notifications.unread_count(actor)
    except BrightRunError:
        count = 0
    st.sidebar.page_link(notifications_page, label=f"Notifications ({count} unread)",
                         icon=":material/notifications:")


def confirm_delete(prefix: str, question: str, delete) -> bool:
    """The "Yes, delete / Cancel" step shared by the pages. ``delete()`` runs on confirmation; a
    Conflict is shown as a warning, other BrightRunErrors as errors. True when it was deleted."""
    from backend.core.errors import Conflict

    st.warning(question, icon=":material/delete:")
    c = st.columns([1, 1, 5])
    confirmed = c[0].button("Yes, delete", key=f"{prefix}_delete_confirm", type="primary")
    if c[1].button("Cancel", key=f"{prefix}_delete_cancel"):
        st.session_state.pop(f"{prefix}_confirm_delete", None)
        st.rerun()
    if not confirmed:
        return False
    st.session_state.pop(f"{prefix}_confirm_delete", None)
    try:
        delete()
    except Conflict as exc:
        show_warning(exc)
        return False
    except BrightRunError as exc:
        show_error(exc)
        return False
    return True
