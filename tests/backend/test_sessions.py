"""Signed dashboard sessions: a token verifies only with the secret that signed it, until it
expires or is revoked; any change to it is refused."""
from __future__ import annotations

import pytest

from backend.accounts.sessions import revoke_session, sign_session, verify_session

KEY, OTHER = b"k" * 32, b"o" * 32
NOW = 1_800_000_000.0


def _tampered(token: str) -> str:
    payload, sig = token.split(".")
    return f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"


@pytest.mark.parametrize("make,secret,at,expected", [
    (lambda: sign_session("u1", KEY, now=NOW), KEY, NOW + 1, "u1"),
    (lambda: sign_session("u1", KEY, now=NOW, ttl_s=60), KEY, NOW + 59, "u1"),
    (lambda: sign_session("u1", KEY, now=NOW, ttl_s=60), KEY, NOW + 60, None),  # expired
    (lambda: sign_session("u1", KEY, now=NOW), OTHER, NOW, None),               # other secret
    (lambda: _tampered(sign_session("u1", KEY, now=NOW)), KEY, NOW, None),
    (lambda: sign_session("u1", KEY, now=NOW) + "x", KEY, NOW, None),
    (lambda: "", KEY, NOW, None),
    (lambda: None, KEY, NOW, None),
    (lambda: "a.b.c", KEY, NOW, None),
    (lambda: "not-a-token", KEY, NOW, None),
])
def test_verify_session(make, secret, at, expected):
    assert verify_session(make(), secret, now=at) == expected


def test_tokens_differ_and_revoke_one():
    a, b = sign_session("u1", KEY, now=NOW), sign_session("u1", KEY, now=NOW)
    assert a != b
    revoke_session(a, KEY, now=NOW)
    assert verify_session(a, KEY, now=NOW) is None
    assert verify_session(b, KEY, now=NOW) == "u1"  # another browser stays signed in
    revoke_session("garbage", KEY, now=NOW)  # raises nothing


def test_cookie_safe_characters():
    token = sign_session("0123-abc", KEY, now=NOW)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
