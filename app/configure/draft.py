"""The Configure page's draft: the user's settings per dataset, kept where they survive.

Streamlit drops a widget's value when its page is left (the widget is not drawn in that run), and a
reload starts a new session. So the form's values live in a draft per dataset, outside the widgets:

- in the session (``configure_drafts``: dataset id → draft), written after every run of the form,
  read back for any widget value that is missing (after leaving the page and coming back);
- in the page's URL as query parameters: the preset, every field that differs from it, the
  hardware and the worker count (``?dataset_id=…&preset=balanced&batch_size=1&warmup_steps=10``),
  so a reload, a bookmark or a shared link opens the same form.

A draft is a plain dict: ``{"preset": id, "values": {field: value}, "hardware": id,
"workers": n}``. The encoding to and from query parameters is pure (``to_query``,
``from_query``) and tested with tables.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

DRAFTS_KEY = "configure_drafts"
DRAFT_FOR_KEY = "configure_draft_for"  # the dataset whose draft the widgets show
NONE_TEXT = "none"  # an optional field set to "once per epoch" (None) in the URL
QUERY_KEYS = ("preset", "hardware", "workers")  # besides the form's fields and dataset_id


def encode(value: Any) -> str:
    """One field value as URL text: lists comma-joined, None as 'none', floats in repr form."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def decode(field: str, text: str, kinds: Mapping[str, type]) -> Any:
    """URL text back to a value of the field's kind (``kinds``: field → float, int, list, str,
    or ``type(None)`` for optional ints). Raises ValueError on text that is not such a value."""
    kind = kinds[field]
    if kind is type(None):
        return None if text.strip().lower() == NONE_TEXT else int(text)
    if kind is list:
        return [t.strip() for t in text.split(",") if t.strip()]
    if kind is float:  # an optional float (warmup_ratio) may be "none"
        return None if text.strip().lower() == NONE_TEXT else float(text)
    if kind is int:
        return int(text)
    return str(text)


def to_query(draft: Mapping[str, Any], preset_values: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters for ``draft``: the preset, the fields that differ from ``preset_values``
    (the preset's own values), hardware and workers."""
    out = {"preset": str(draft["preset"])}
    for field, value in draft["values"].items():
        if field in preset_values and value != preset_values[field]:
            out[field] = encode(value)
    if draft.get("hardware"):
        out["hardware"] = str(draft["hardware"])
    if draft.get("workers"):
        out["workers"] = str(int(draft["workers"]))
    return out


def from_query(query: Mapping[str, str], kinds: Mapping[str, type],
               preset_values: Callable[[str], Mapping[str, Any]]) -> dict[str, Any] | None:
    """The draft a URL describes, or None when it names no preset (a plain ``?dataset_id=``).
    Fields come from the preset (``preset_values(preset_id)``), then from the URL; a value that
    does not parse is left at the preset's (the form's limits check the rest)."""
    preset = query.get("preset")
    if not preset:
        return None
    try:
        values = dict(preset_values(preset))
    except Exception:  # noqa: BLE001 - an unknown preset in a hand-edited URL: ignore the URL
        return None
    for field in kinds:
        if field in query:
            try:
                values[field] = decode(field, query[field], kinds)
            except (TypeError, ValueError):
                continue
    draft: dict[str, Any] = {"preset": preset, "values": values}
    if query.get("hardware"):
        draft["hardware"] = str(query["hardware"])
    try:
        draft["workers"] = int(query["workers"]) if query.get("workers") else None
    except ValueError:
        draft["workers"] = None
    return draft
