"""Models: trained LoRA adapters (newest or best first)."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.widgets import badge_markdown, fmt_time, handled, literal, page_path
from backend import models

SORTS = {"newest": "created_at", "quality": "quality", "name": "name"}


def _row(m) -> None:
    c = st.columns([3, 1.2, 2.5, 1.2, 1.5], vertical_alignment="center")
    c[0].markdown(f"**{literal(m.name)}** {literal(m.version)}")
    c[1].markdown(badge_markdown(m.status))
    c[2].markdown(literal(m.base_model))
    loss = (m.quality_metrics or {}).get("final_validation_loss")
    c[3].markdown("—" if loss is None else f"val. loss {loss:.3f}")
    c[4].markdown(fmt_time(m.created_at))


def main() -> None:
    actor = current_user()
    st.title("Models")
    sort = st.selectbox("Sort", tuple(SORTS), key="models_sort")
    with handled():
        page = models.list_models(actor, sort=SORTS[sort], per_page=50)
        if not page.items:
            st.info("No models yet — they appear here when a training job completes.",
                    icon=":material/model_training:")
            st.page_link(page_path("configure"), label="Configure training",
                         icon=":material/tune:")
            return
        for m in page.items:
            _row(m)


main()
