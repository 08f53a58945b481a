"""Sign-in: unknown e-mails take as long as wrong passwords; failed sign-ins are throttled per
e-mail and per process, with a message that says when to try again."""
from __future__ import annotations

import statistics
import time

import pytest

from backend.accounts import users
from backend.accounts.login_throttle import LoginThrottle
from backend.core.errors import AuthError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def _refused(t: LoginThrottle, email: str) -> str | None:
    try:
        t.check(email)
    except AuthError as exc:
        assert exc.code == "login_throttled"
        return exc.message
    return None


@pytest.mark.parametrize("failures,advance,refused", [
    (4, 0, False),      # under the limit
    (5, 0, True),       # at the limit
    (5, 299, True),     # still inside the window
    (5, 300.5, False),  # the oldest failure left the window
])
def test_throttle_per_email(clock, failures, advance, refused):
    t = LoginThrottle(per_email=5, email_window_s=300, per_process=100, clock=clock)
    for _ in range(failures):
        t.failed("a@x.io")
    clock.now += advance
    message = _refused(t, "a@x.io")
    assert (message is not None) == refused
    if refused:
        assert "too many failed sign-ins for this e-mail; try again in" in message
    assert _refused(t, "b@x.io") is None  # another e-mail is not affected


def test_throttle_per_process_and_success_clears(clock):
    t = LoginThrottle(per_email=3, per_process=6, process_window_s=60, clock=clock)
    for i in range(6):
        t.failed(f"user{i}@x.io")
    assert "on this server; try again in 60 s" in _refused(t, "new@x.io")
    clock.now += 61
    assert _refused(t, "new@x.io") is None
    t.failed("c@x.io")
    t.failed("c@x.io")
    t.succeeded("c@x.io")
    t.failed("c@x.io")
    t.failed("c@x.io")
    assert _refused(t, "c@x.io") is None  # the success cleared the earlier failures


def _median_ms(fn, n=3) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with pytest.raises(AuthError):
            fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def test_unknown_email_takes_as_long_as_a_wrong_password(db, monkeypatch):
    monkeypatch.setattr(users, "throttle", LoginThrottle(per_email=100, per_process=1000))
    users.create_user("known@x.io", "Known", "right-password-1")
    known = _median_ms(lambda: users.authenticate("known@x.io", "wrong-password"))
    unknown = _median_ms(lambda: users.authenticate("nobody@x.io", "wrong-password"))
    # before: 231 ms vs 1.9 ms; both now verify an argon2 hash (the load of a shared machine
    # makes single timings noisy, hence the wide band)
    assert unknown > 0.4 * known and known > 0.4 * unknown, (known, unknown)


def test_authenticate_throttles_then_recovers(db, monkeypatch, clock):
    monkeypatch.setattr(users, "throttle", LoginThrottle(per_email=3, email_window_s=300,
                                                         clock=clock))
    users.create_user("ann@x.io", "Ann", "right-password-1")
    for _ in range(3):
        with pytest.raises(AuthError, match="wrong e-mail or password"):
            users.authenticate("ANN@x.io ", "wrong-password")
    with pytest.raises(AuthError) as err:  # even the right password, while throttled
        users.authenticate("ann@x.io", "right-password-1")
    assert err.value.code == "login_throttled" and "try again in 5 min" in err.value.message
    for _ in range(3):  # unknown e-mails are throttled alike (nothing tells who exists)
        with pytest.raises(AuthError, match="wrong e-mail or password"):
            users.authenticate("ghost@x.io", "x")
    with pytest.raises(AuthError, match="too many failed sign-ins"):
        users.authenticate("ghost@x.io", "x")
    clock.now += 301
    assert users.authenticate("ann@x.io", "right-password-1").email == "ann@x.io"


def test_cli_login_throttled_message(db, monkeypatch, capsys, clock):
    from backend.cli import main
    from backend.core.config import reset_settings

    monkeypatch.setattr(users, "throttle", LoginThrottle(per_email=2, clock=clock))
    monkeypatch.setenv("BRIGHTRUN_AUTH", "password")
    monkeypatch.setenv("BRIGHTRUN_PASSWORD", "wrong-password")
    reset_settings()
    users.create_user("cli@x.io", "Cli", "right-password-1")
    for _ in range(2):
        assert main(["--user", "cli@x.io", "datasets", "list"]) == 1
    assert main(["--user", "cli@x.io", "datasets", "list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error [login_throttled]: too many failed sign-ins for this e-mail")
