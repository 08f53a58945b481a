"""Throttling of failed sign-ins: pure bookkeeping with an injectable clock, no I/O.

Two limits, both counted in this process (the dashboard server, or one CLI command):
- per e-mail: after ``per_email`` failures within ``email_window_s`` that e-mail is refused, right
  password or not, until the oldest failure leaves the window (guessing one user's password);
- per process: after ``per_process`` failures within ``process_window_s`` every sign-in is refused
  for the rest of that window (spraying many e-mails).
Unknown and known e-mails are counted alike, so the throttle tells nothing about who exists.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from backend.core.errors import AuthError

PER_EMAIL, EMAIL_WINDOW_S = 5, 300.0
PER_PROCESS, PROCESS_WINDOW_S = 50, 60.0
MAX_TRACKED_EMAILS = 10_000


class LoginThrottle:
    def __init__(self, per_email: int = PER_EMAIL, email_window_s: float = EMAIL_WINDOW_S,
                 per_process: int = PER_PROCESS, process_window_s: float = PROCESS_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.per_email, self.email_window_s = per_email, email_window_s
        self.per_process, self.process_window_s = per_process, process_window_s
        self.clock = clock
        self._by_email: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def check(self, email: str) -> None:
        """Raise AuthError (code ``login_throttled``) when ``email`` (or this process) has failed
        too often recently; the message says when to try again."""
        now = self.clock()
        with self._lock:
            self._prune(now)
            times = self._by_email.get(email)
            if times is not None and len(times) >= self.per_email:
                wait = times[0] + self.email_window_s - now
                raise AuthError(f"too many failed sign-ins for this e-mail; try again in "
                                f"{_human(wait)}", code="login_throttled")
            if len(self._all) >= self.per_process:
                wait = self._all[0] + self.process_window_s - now
                raise AuthError(f"too many failed sign-ins on this server; try again in "
                                f"{_human(wait)}", code="login_throttled")

    def failed(self, email: str) -> None:
        now = self.clock()
        with self._lock:
            self._prune(now)
            if email not in self._by_email and len(self._by_email) >= MAX_TRACKED_EMAILS:
                self._by_email.pop(next(iter(self._by_email)))  # the longest-tracked one
            self._by_email.setdefault(email, deque()).append(now)
            self._all.append(now)

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._by_email.pop(email, None)

    def reset(self) -> None:
        with self._lock:
            self._by_email.clear()
            self._all.clear()

    def _prune(self, now: float) -> None:
        while self._all and self._all[0] <= now - self.process_window_s:
            self._all.popleft()
        for email in [e for e, t in self._by_email.items() if t[-1] <= now - self.email_window_s]:
            del self._by_email[email]
        for times in self._by_email.values():
            while times and times[0] <= now - self.email_window_s:
                times.popleft()


def _human(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    return f"{seconds} s" if seconds < 120 else f"{(seconds + 59) // 60} min"
