"""Password mode in a real browser: reloading the page keeps the user signed in (the session cookie
signed with BRIGHTRUN_SECRET_KEY), another browser without the cookie sees the login form, and
after "Sign out" a reload shows the login form again.

The dashboard is ``streamlit run app/main.py`` in a subprocess, driven by headless Chromium.
"""
from __future__ import annotations

import os

import pytest

from tests.e2e.team_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUT,
    PAGE_TIMEOUT_MS,
    log_in,
    served_dashboard,
    settle,
)

pytestmark = [pytest.mark.browser]
EMAIL, PASSWORD = "reload@example.com", "reload-password-1"


def _signed_in(page) -> bool:
    sidebar = page.locator('[data-testid="stSidebar"]').get_by_text(EMAIL)
    login = page.get_by_text("Sign in to continue.")
    sidebar.or_(login).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    return sidebar.count() > 0 and login.count() == 0


def test_reload_keeps_the_user_signed_in(brightrun_home, monkeypatch):
    from playwright.sync_api import sync_playwright

    from backend.accounts.users import create_user
    from backend.core.config import reset_settings
    from backend.db.session import dispose_engines

    monkeypatch.setenv("BRIGHTRUN_AUTH", "password")
    monkeypatch.setenv("BRIGHTRUN_SECRET_KEY", "reload-test-secret")
    reset_settings()
    create_user(EMAIL, "Reload", PASSWORD)
    dispose_engines()
    OUT.mkdir(parents=True, exist_ok=True)
    with served_dashboard(dict(os.environ), OUT / "session-reload-streamlit.log") as dash:
        url = dash.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context().new_page()
                log_in(page, url, EMAIL, PASSWORD)
                cookie = {c["name"]: c for c in page.context.cookies()}["brightrun_session"]
                assert cookie["sameSite"] == "Strict" and cookie["expires"] > 0
                page.reload(wait_until="domcontentloaded")
                assert _signed_in(page), "a reload signed the user out"
                other = browser.new_context().new_page()  # no cookie: not signed in
                other.goto(url, wait_until="domcontentloaded")
                assert not _signed_in(other)
                page.get_by_role("button", name="Sign out").click()
                page.get_by_text("Sign in to continue.").wait_for(timeout=PAGE_TIMEOUT_MS)
                settle(page)
                assert "brightrun_session" not in {c["name"] for c in page.context.cookies()}
                page.reload(wait_until="domcontentloaded")
                assert not _signed_in(page), "signed in again after sign-out and reload"
            finally:
                browser.close()
