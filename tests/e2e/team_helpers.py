"""Helpers for the team-setup test (tests/e2e/test_team.py): the CLI run as a user, the real
dashboard served by ``streamlit run`` in a subprocess, and headless Chromium driving it.

Nothing here stands in for a product component: the CLI is ``backend.cli.main`` (or the CLI run as a
subprocess), the dashboard is ``app/main.py`` served by Streamlit, the browser is Debian's Chromium.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

from backend.cli import main as cli_main
from backend.core.config import reset_settings
from tests.fixtures.paths import REPO

ROOT = REPO
OUT = ROOT / "tests" / "out"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DASHBOARD_START_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- the CLI ------------------------------------------------------------------------------------
def cli_subprocess(*argv: str, env: dict[str, str] | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m backend.cli ARGV`` (what the ``brightrun`` script runs) with the current
    environment; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "backend.cli", *argv], cwd=ROOT,
                          env=dict(os.environ if env is None else env), capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


class CliUser:
    """Runs ``brightrun --user EMAIL …`` in this process with BRIGHTRUN_PASSWORD set for that user
    (settings are re-read for every command, as a fresh process would)."""

    def __init__(self, email: str, password: str, monkeypatch, capsys):
        self.email, self.password = email, password
        self._mp, self._capsys = monkeypatch, capsys

    def __call__(self, *argv: str) -> CliResult:
        self._mp.setenv("BRIGHTRUN_PASSWORD", self.password)
        self._mp.delenv("BRIGHTRUN_USER", raising=False)
        reset_settings()
        self._capsys.readouterr()
        try:
            rc = cli_main(["--user", self.email, *argv])
        finally:
            self._mp.delenv("BRIGHTRUN_PASSWORD", raising=False)
            reset_settings()
        captured = self._capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    def ok_json(self, *argv: str):
        res = self(*argv, "--json")
        assert res.rc == 0, (argv, res.rc, res.err[-2000:], res.out[-2000:])
        return res.json


# ----- the dashboard ------------------------------------------------------------------------------
def _log_tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class Dashboard:
    """A ``streamlit run app/main.py`` subprocess started by :func:`served_dashboard`."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path):
        self.proc, self.url, self.log_path = proc, url, log_path

    def wait_ready(self, timeout_s: float = DASHBOARD_START_TIMEOUT_S) -> str:
        """Until ``/_stcore/health`` answers 200; returns the URL. Fails with the log's tail when
        the process exits or does not answer in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"streamlit exited with {self.proc.returncode}:\n"
                                     f"{_log_tail(self.log_path)}")
            try:
                if requests.get(f"{self.url}/_stcore/health", timeout=2).status_code == 200:
                    return self.url
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dashboard did not answer /_stcore/health in "
                                     f"{timeout_s:g}s:\n{_log_tail(self.log_path)}")
            time.sleep(0.5)


@contextmanager
def served_dashboard(env: dict[str, str], log_path: Path) -> Iterator[Dashboard]:
    """Start ``streamlit run app/main.py`` (headless, loopback, a free port) with ``env``; yields a
    :class:`Dashboard` (call ``wait_ready()``); stops the process (its PID's process group) after."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield Dashboard(proc, f"http://127.0.0.1:{port}", log_path)
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group of a process this test started."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


# ----- the browser --------------------------------------------------------------------------------
def settle(page) -> None:
    """Wait until Streamlit has finished the current script run (the 'Running…' widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_timeout(300)


def log_in(page, url: str, email: str, password: str, login_shot: str | None = None) -> None:
    """Open the dashboard, sign in through the login form (screenshot ``login_shot`` of the form
    first when given), wait for the signed-in sidebar."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Sign in to continue.").wait_for(timeout=PAGE_TIMEOUT_MS)
    if login_shot:
        screenshot(page, login_shot)
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password", exact=True).press("Tab")
    page.get_by_role("button", name="Sign in").click()
    page.locator('[data-testid="stSidebar"]').get_by_text(email).wait_for(timeout=PAGE_TIMEOUT_MS)
    settle(page)


def open_page(page, title: str, wait_text: str) -> str:
    """Click ``title`` in the sidebar navigation (same Streamlit session), wait for ``wait_text``
    in the main area; returns the whole page's visible text."""
    nav = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title)
    nav.first.click()
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text(wait_text, exact=False).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    return page.locator("body").inner_text()


def screenshot(page, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"team-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
