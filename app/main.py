"""BrightRun LoRA Studio dashboard: `streamlit run app/main.py`.

Entry script: page config, auth gate, navigation over the pages in the top-level ``pages/`` folder,
and the sidebar (who is signed in, unread notifications).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import auth  # noqa: E402
from app.ui import widgets
from backend.core.errors import BrightRunError  # noqa: E402

PAGES = [  # (file stem, title, material icon)
    ("home", "Home", "home"),
    ("datasets", "Datasets", "dataset"),
    ("configure", "Configure", "tune"),
    ("jobs", "Jobs", "list_alt"),
    ("sweeps", "Sweeps", "science"),
    ("monitor", "Monitor", "monitoring"),
    ("models", "Models", "model_training"),
    ("costs", "Costs", "payments"),
    ("notifications", "Notifications", "notifications"),
]


def build_pages() -> dict[str, st.Page]:
    return {stem: st.Page(ROOT / "pages" / f"{stem}.py", title=title, url_path=stem,
                          icon=f":material/{icon}:", default=(stem == "home"))
            for stem, title, icon in PAGES}


def main() -> None:
    st.set_page_config(page_title="BrightRun LoRA Studio", page_icon=":material/bolt:",
                       layout="wide")
    # Navigation first, so a deep link (/models?id=…) survives the sign-in form in password mode;
    # signed-out visitors see no page list.
    pages = build_pages()
    signed_in = (not auth.password_mode()) or bool(st.session_state.get(auth.SESSION_KEY))
    nav = st.navigation(list(pages.values()), position="sidebar" if signed_in else "hidden")
    try:
        user = auth.current_user()
    except BrightRunError as exc:  # e.g. the database is unreachable or out of date
        widgets.show_error(exc)
        st.stop()
    st.sidebar.markdown("### :material/bolt: BrightRun LoRA Studio")
    auth.sidebar_user(user)
    widgets.sidebar_unread(user, pages["notifications"])
    nav.run()


main()
