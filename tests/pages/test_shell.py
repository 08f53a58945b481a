"""The dashboard shell: navigation, sidebar, auth gate, every page's empty state."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app.ui.widgets import literal
from tests.pages.conftest import MAIN, TIMEOUT, open_app, texts

PAGES = {  # page → text of its empty state
    "home": "No datasets yet",
    "datasets": "No datasets yet — upload one",
    "configure": "No ready datasets yet",
    "jobs": "No training jobs yet — configure one from a ready dataset",
    "monitor": "No job to monitor",
    "models": "No models yet",
    "costs": "No costs recorded this month",
    "notifications": "No notifications yet",
    "sweeps": "No sweeps yet",
}


def _page_links(at: AppTest) -> dict[str, str]:
    return {p.proto.label: p.proto.page for p in at.get("page_link")}


def test_shell_none_mode_shows_local_user_and_navigation(app_env):
    at = open_app()
    assert not at.exception
    assert at.title[0].value == "BrightRun LoRA Studio"
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "Local user" in sidebar
    assert literal("local@brightrun.local") in sidebar
    assert not at.sidebar.button  # no sign-out without password auth
    assert _page_links(at)["Notifications (0 unread)"] == "notifications"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_empty_state(app_env, page):
    at = open_app(page)
    assert not at.exception, at.exception
    assert PAGES[page] in texts(at)


def test_quick_actions_link_to_pages(app_env):
    links = _page_links(open_app())
    assert links["Upload dataset"] == "datasets"
    assert links["Configure training"] == "configure"


@pytest.fixture
def password_env(app_env, monkeypatch):
    from backend.core.config import reset_settings

    monkeypatch.setenv("BRIGHTRUN_AUTH", "password")
    reset_settings()
    from backend.accounts.users import create_user

    return create_user("ana@example.com", "Ana <i>Admin</i>", "correct horse 1", role="admin")


def _login(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input(key="auth_email").input(email)
    at.text_input(key="auth_password").input(password)
    at.button[0].click()
    return at.run(timeout=TIMEOUT)


def test_password_mode_requires_login(password_env):
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    assert not at.exception
    assert at.text_input(key="auth_password").proto.type == at.text_input(
        key="auth_password").proto.PASSWORD
    assert "Sign in to continue." in texts(at)
    assert not at.get("page_link")  # no navigation before login
    assert "Recent datasets" not in texts(at)


def test_password_mode_wrong_password_is_an_error(password_env):
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    at = _login(at, "ana@example.com", "wrong password")
    assert not at.exception
    assert [e.value for e in at.error] == ["wrong e\\-mail or password"]
    assert "auth_user_id" not in at.session_state
    assert "Recent datasets" not in texts(at)


def test_password_mode_right_password_shows_app_and_signs_out(password_env):
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    at = _login(at, "ANA@example.com ", "correct horse 1")
    assert not at.exception
    assert at.session_state["auth_user_id"] == password_env.id
    assert "Recent datasets" in texts(at)
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert literal("Ana <i>Admin</i>") in sidebar  # shown literally, not as HTML
    at.button(key="auth_sign_out").click()
    at.run(timeout=TIMEOUT)
    assert "auth_user_id" not in at.session_state
    assert "Sign in to continue." in texts(at)


def _cookie_scripts(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html") if "brightrun_session=" in h.proto.body]


def test_password_mode_session_cookie_signed_with_secret_key(password_env, monkeypatch):
    """Signing in writes a cookie holding a token signed with BRIGHTRUN_SECRET_KEY (a reload sends
    it back: tests/e2e/test_session_reload.py); signing out clears it and revokes the token."""
    import re
    import time

    from backend.accounts.sessions import TTL_S, verify_session
    from backend.core.config import reset_settings

    monkeypatch.setenv("BRIGHTRUN_SECRET_KEY", "s3cret-for-sessions")
    reset_settings()
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    assert not _cookie_scripts(at)
    at = _login(at, "ana@example.com", "correct horse 1")
    [script] = _cookie_scripts(at)
    token = re.search(r"brightrun_session=([A-Za-z0-9_.-]+);", script).group(1)
    assert f"max-age={TTL_S}" in script and "SameSite=Strict" in script
    assert verify_session(token, b"s3cret-for-sessions", now=time.time()) == password_env.id
    assert verify_session(token, b"another-secret", now=time.time()) is None
    at.run(timeout=TIMEOUT)
    assert not _cookie_scripts(at)  # written once, not on every run
    at.button(key="auth_sign_out").click()
    at.run(timeout=TIMEOUT)
    [script] = _cookie_scripts(at)
    assert "brightrun_session=; path=/; max-age=0" in script
    assert verify_session(token, b"s3cret-for-sessions", now=time.time()) is None  # revoked


def test_password_mode_login_throttled_message(password_env):
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    for _ in range(5):
        at = _login(at, "ana@example.com", "wrong password")
    at = _login(at, "ana@example.com", "correct horse 1")
    assert [e.value for e in at.error] == [
        literal("too many failed sign-ins for this e-mail; try again in 5 min")]
    assert "auth_user_id" not in at.session_state


def test_error_boxes_mask_secrets_and_escape_markup():
    from app.ui.widgets import error_text
    from backend.core.errors import BrightRunError

    exc = BrightRunError("cannot reach postgresql://app:hunter2@db:5432/x?password=s3cret **now**",
                         hint="check token=abc123")
    text = error_text(exc)
    assert "hunter2" not in text and "s3cret" not in text and "abc123" not in text
    assert "\\*\\*now\\*\\*" in text
