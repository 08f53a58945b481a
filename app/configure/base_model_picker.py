"""Configure's base-model select (each model with its parameter count and size) and the progress of
the SmolLM2 install that ``scripts/run`` starts in the background (read from its progress file)."""
from __future__ import annotations

import time

import streamlit as st

from app.ui.widgets import literal
from backend.base_models import install as bmi
from backend.base_models.catalog import BaseModelInfo, list_base_models, model_label
from backend.base_models.tiny_model import TINY_MODEL_ID

STALE_S = 120  # a "running" progress file not updated for this long belongs to a dead install


@st.cache_data(ttl=10, show_spinner=False)
def _models(home: str) -> list[BaseModelInfo]:
    return list_base_models(home)


def _home() -> str:
    from backend.core.config import get_settings

    return str(get_settings().home)


def install_status(base_model_key: str) -> None:
    """While SmolLM2 installs: a progress bar refreshed every 2 s; once it is ready, preselect it
    (when the form still holds the tiny test model); a failed install: its error and the command."""
    progress = bmi.read_progress(bmi.DEFAULT_MODEL_ID, bmi.base_models_root(_home()))
    if not progress or progress.get("state") == "done":
        return
    if progress.get("state") == "failed":
        st.warning(f"Installing {bmi.DEFAULT_MODEL_ID} failed: {literal(progress.get('message'))}. "
                   f"Run `brightrun base-models install {bmi.DEFAULT_MODEL_ID}` to retry.",
                   icon=":material/error:")
        return
    if time.time() - float(progress.get("updated") or 0) > STALE_S:
        return  # the installing process died; the CLI shows the error when run again

    @st.fragment(run_every=2)
    def _bar() -> None:
        now = bmi.read_progress(bmi.DEFAULT_MODEL_ID, bmi.base_models_root(_home())) or {}
        if now.get("state") != "running":
            _models.clear()
            if st.session_state.get(base_model_key) == TINY_MODEL_ID:
                st.session_state.pop(base_model_key, None)  # refilled with the new default
            st.rerun(scope="app")
        st.progress(float(now.get("fraction") or 0.0),
                    text=f"Installing base model {bmi.DEFAULT_MODEL_ID} (once, about a minute): "
                         f"{literal(now.get('message'))}")

    _bar()


def options(current: str) -> tuple[list[str], dict[str, BaseModelInfo]]:
    """Installed models, then installable and estimate-only catalog models, plus the current value
    (a typed path) — and each known model's info."""
    infos = {m.id: m for m in _models(_home())}
    names = list(infos)
    return (names if not current or current in names else [current, *names]), infos


def label(name: str, infos: dict[str, BaseModelInfo]) -> str:
    info = infos.get(name)
    if info is None:
        return name
    text = model_label(info)
    if info.installed:
        return text
    if info.installable:
        return f"{text} (not installed: brightrun base-models install {name})"
    return f"{text} (estimate only: not on this machine)"
