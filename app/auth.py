"""Auth gate of the dashboard.

``BRIGHTRUN_AUTH=none`` (default): everyone is the single local user, no login.
``BRIGHTRUN_AUTH=password``: a login form; the signed-in user's id is kept in ``st.session_state``
and the user is re-read from the database on every run (a removed user is signed out). Signing in
also stores a session token signed with the product's secret (``backend.accounts.sessions``) in a cookie,
so reloading the page keeps the user signed in until the token expires or they sign out.
"""
from __future__ import annotations

import json
import time

import streamlit as st

from app.ui.widgets import literal, show_error
from backend.accounts import sessions, users
from backend.core.config import get_settings
from backend.core.errors import AuthError, NotFound
from backend.core.schemas import UserInfo

SESSION_KEY = "auth_user_id"
TOKEN_KEY = "auth_session_token"
COOKIE_PENDING_KEY = "auth_cookie_pending"  # "set" after sign-in, "clear" after sign-out
SIGNED_OUT_KEY = "auth_signed_out"  # this browser session signed out: ignore the page's cookie


def password_mode() -> bool:
    return get_settings().auth == "password"


def _secret() -> bytes:
    from backend.core.secret import get_signing_secret

    return get_signing_secret()


def current_user() -> UserInfo:
    """The signed-in user. In password mode with nobody signed in, shows the login form and stops
    the script run (so pages never run without a user)."""
    if not password_mode():
        return users.ensure_local_user()
    _write_cookie()
    user_id = st.session_state.get(SESSION_KEY) or _user_from_cookie()
    if user_id:
        try:
            user = users.get_user(user_id)
            st.session_state[SESSION_KEY] = user.id
            return user
        except NotFound:
            sign_out()
            _write_cookie()
    _login_form()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def _user_from_cookie() -> str | None:
    """The user id of a valid session cookie sent with the page (after a reload)."""
    if st.session_state.get(SIGNED_OUT_KEY):
        return None  # signed out: the cookie sent with this page is the old one
    try:
        token = st.context.cookies.get(sessions.COOKIE)
    except Exception:  # noqa: BLE001 - no browser connection (e.g. a script run in tests)
        return None
    user_id = sessions.verify_session(token, _secret(), now=time.time()) if token else None
    if user_id:
        st.session_state[TOKEN_KEY] = token
    return user_id


def _write_cookie() -> None:
    """Set (after sign-in) or clear (after sign-out) the session cookie in the browser. Streamlit
    cannot set a cookie from the server, so a one-line script in the page does it."""
    pending = st.session_state.pop(COOKIE_PENDING_KEY, None)
    if pending == "set" and st.session_state.get(TOKEN_KEY):
        value, max_age = st.session_state[TOKEN_KEY], sessions.TTL_S
    elif pending == "clear":
        value, max_age = "", 0
    else:
        return
    cookie = json.dumps(f"{sessions.COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict")
    st.html(f"<script>document.cookie = {cookie} + (location.protocol === 'https:' ? "
            f"'; Secure' : '');</script>", unsafe_allow_javascript=True)


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
    st.session_state.pop(SIGNED_OUT_KEY, None)
    st.session_state[TOKEN_KEY] = sessions.sign_session(user.id, _secret(), now=time.time())
    st.session_state[COOKIE_PENDING_KEY] = "set"
    st.rerun()


def sign_out() -> None:
    st.session_state.pop(SESSION_KEY, None)
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        sessions.revoke_session(token, _secret(), now=time.time())
    st.session_state[COOKIE_PENDING_KEY] = "clear"
    st.session_state[SIGNED_OUT_KEY] = True


def sidebar_user(user: UserInfo) -> None:
    """Who is signed in, and a sign-out button in password mode."""
    with st.sidebar:
        st.markdown(f"**{literal(user.name)}**  \n{literal(user.email)} · {literal(user.role)}")
        if password_mode():
            st.button("Sign out", key="auth_sign_out", on_click=sign_out,
                      icon=":material/logout:")
