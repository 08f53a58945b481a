"""Auth gate of the dashboard.

``BRIGHTRUN_AUTH=none`` (default): everyone is the single local user, no login.
``BRIGHTRUN_AUTH=password``: a login form; the signed-in user's id is kept in ``st.session_state``
and the user is re-read from the database on every run (a removed user is signed out).
"""
from __future__ import annotations

import streamlit as st

from app.widgets import literal, show_error
from backend import users
from backend.config import get_settings
from backend.errors import AuthError, NotFound
from backend.schemas import UserInfo

SESSION_KEY = "auth_user_id"


def password_mode() -> bool:
    return get_settings().auth == "password"


def current_user() -> UserInfo:
    """The signed-in user. In password mode with nobody signed in, shows the login form and stops
    the script run (so pages never run without a user)."""
    if not password_mode():
        return users.ensure_local_user()
    user_id = st.session_state.get(SESSION_KEY)
    if user_id:
        try:
            return users.get_user(user_id)
        except NotFound:
            st.session_state.pop(SESSION_KEY, None)
    _login_form()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def _login_form() -> None:
    st.title("BrightRun LoRA Studio")
    st.caption("Sign in to continue.")
    with st.form("auth_login"):
        email = st.text_input("E-mail", key="auth_email")
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        user = users.authenticate(email, password)
    except AuthError as exc:
        show_error(exc)
        return
    st.session_state[SESSION_KEY] = user.id
    st.rerun()


def sign_out() -> None:
    st.session_state.pop(SESSION_KEY, None)


def sidebar_user(user: UserInfo) -> None:
    """Who is signed in, and a sign-out button in password mode."""
    with st.sidebar:
        st.markdown(f"**{literal(user.name)}**  \n{literal(user.email)} · {literal(user.role)}")
        if password_mode():
            st.button("Sign out", key="auth_sign_out", on_click=sign_out,
                      icon=":material/logout:")
