"""Signed dashboard sessions: a token that says "user U until time T", HMAC-SHA256-signed with the
product's secret (``BRIGHTRUN_SECRET_KEY``, else ``$BRIGHTRUN_HOME/secret.key``).

The dashboard keeps it in a cookie so that reloading the page keeps a password-mode user signed
in (``app/auth.py``). Signing and checking are pure (the clock and the secret are arguments);
signing out revokes the token in this process until it would have expired anyway.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading

COOKIE = "brightrun_session"
TTL_S = 12 * 3600
_PURPOSE = b"brightrun-dashboard-session:"
_revoked: dict[str, float] = {}  # nonce -> expiry
_lock = threading.Lock()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sig(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _PURPOSE + payload.encode("ascii"), hashlib.sha256).digest())


def sign_session(user_id: str, secret: bytes, *, now: float, ttl_s: float = TTL_S) -> str:
    """A token for ``user_id`` valid until ``now + ttl_s`` (URL- and cookie-safe characters)."""
    payload = _b64(json.dumps({"u": user_id, "e": int(now + ttl_s), "n": secrets.token_hex(8)},
                              separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_sig(secret, payload)}"


def _claims(token: str, secret: bytes) -> dict | None:
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1000:
        return None
    payload, sig = token.split(".")
    if not hmac.compare_digest(sig, _sig(secret, payload)):
        return None
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("u"), str) \
            or not isinstance(claims.get("e"), int) or not isinstance(claims.get("n"), str):
        return None
    return claims


def verify_session(token: str | None, secret: bytes, *, now: float) -> str | None:
    """The user id of a valid token; None when it is missing, tampered with, signed with another
    secret, expired or revoked. Raises nothing."""
    claims = _claims(token or "", secret)
    if claims is None or claims["e"] <= now:
        return None
    with _lock:
        if claims["n"] in _revoked:
            return None
    return claims["u"]


def revoke_session(token: str | None, secret: bytes, *, now: float) -> None:
    """Make a token invalid in this process (signing out); forgotten once it would have expired."""
    claims = _claims(token or "", secret)
    with _lock:
        for nonce in [n for n, exp in _revoked.items() if exp <= now]:
            del _revoked[nonce]
        if claims is not None:
            _revoked[claims["n"]] = claims["e"]
