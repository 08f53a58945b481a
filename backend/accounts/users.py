"""Users: the local user of the embedded default, password users of team mode, budgets."""
from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from backend.accounts.login_throttle import LoginThrottle
from backend.core.config import get_settings
from backend.core.errors import AccessDenied, AuthError, Conflict, InvalidInput, NotFound
from backend.core.schemas import UserInfo
from backend.core.text_checks import check_text
from backend.db.models import User
from backend.db.session import session_scope

ROLES = ("user", "admin", "billing_admin")
LOCAL_EMAIL = "local@brightrun.local"
_hasher = PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# verified for unknown e-mails so they take as long as known ones (timing tells nobody who exists)
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$1aBj/VAOwGRWP2+fjM9RNA$"
               "JbFwv6gm9YPCAL9/5gSxiE+4pX/hxd3k0IIV/JE/RQo")
throttle = LoginThrottle()


def ensure_local_user() -> UserInfo:
    """The single user of the embedded default (created on first use)."""
    with session_scope() as s:
        row = s.scalar(select(User).where(User.email == LOCAL_EMAIL))
        if row is None:
            row = User(email=LOCAL_EMAIL, name="Local user", role="admin", is_local=True)
            s.add(row)
            s.flush()
        return UserInfo.model_validate(row)


def create_user(email: str, name: str, password: str, role: str = "user",
                monthly_budget: float | None = None) -> UserInfo:
    """Create a password user. Raises InvalidInput (bad email/role/password/budget) or Conflict
    (email taken)."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not an e-mail address")
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise InvalidInput("password must have at least 8 characters")
    if not 1 <= len(name.strip()) <= 100:
        raise InvalidInput("name must have 1 to 100 characters")
    check_text(name, "name")
    _check_budget(monthly_budget)
    with session_scope() as s:
        if s.scalar(select(User).where(User.email == email)) is not None:
            raise Conflict(f"a user with e-mail {email} already exists", code="user_exists")
        row = User(email=email, name=name.strip(), role=role, monthly_budget=monthly_budget,
                   password_hash=_hasher.hash(password))
        s.add(row)
        s.flush()
        return UserInfo.model_validate(row)


def authenticate(email: str, password: str) -> UserInfo:
    """Check a password. Raises AuthError with one message for unknown user or wrong password, in
    the same time (an unknown e-mail is checked against a dummy hash), or AuthError
    ``login_throttled`` after too many failures (:mod:`backend.accounts.login_throttle`)."""
    email = (email or "").strip().lower()
    throttle.check(email)
    with session_scope() as s:
        row = s.scalar(select(User).where(User.email == email))
        stored = row.password_hash if row is not None and row.password_hash else None
        try:
            ok = _hasher.verify(stored or _dummy_hash(), password or "") and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            throttle.failed(email)
            raise AuthError("wrong e-mail or password")
        throttle.succeeded(email)
        return UserInfo.model_validate(row)


def _dummy_hash() -> str:
    """A hash with the hasher's current parameters, so verifying it costs what a real one does."""
    global _DUMMY_HASH
    if _hasher.check_needs_rehash(_DUMMY_HASH):
        _DUMMY_HASH = _hasher.hash("brightrun-timing-dummy")
    return _DUMMY_HASH


def get_user(user_id: str) -> UserInfo:
    """Raises NotFound."""
    with session_scope() as s:
        row = s.get(User, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", code="user_not_found")
        return UserInfo.model_validate(row)


def find_user(email: str) -> UserInfo:
    """Raises NotFound."""
    with session_scope() as s:
        row = s.scalar(select(User).where(User.email == email.strip().lower()))
        if row is None:
            raise NotFound(f"no user with e-mail {email}", code="user_not_found")
        return UserInfo.model_validate(row)


def list_users(actor: UserInfo) -> list[UserInfo]:
    """Admins and billing admins see every user; others see themselves."""
    with session_scope() as s:
        stmt = select(User).order_by(User.created_at)
        if not actor.sees_all_costs:
            stmt = stmt.where(User.id == actor.id)
        return [UserInfo.model_validate(r) for r in s.scalars(stmt)]


def set_budget(actor: UserInfo, user_id: str, monthly_budget: float | None) -> UserInfo:
    """Set a user's monthly budget (None removes it). A user may set their own; admins and billing
    admins anyone's. Raises AccessDenied, NotFound, InvalidInput."""
    _check_budget(monthly_budget)
    if user_id != actor.id and not actor.sees_all_costs:
        raise AccessDenied("only admins and billing admins can set another user's budget")
    with session_scope() as s:
        row = s.get(User, user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found", code="user_not_found")
        row.monthly_budget = monthly_budget
        s.flush()
        return UserInfo.model_validate(row)


def _check_budget(budget: float | None) -> None:
    if budget is not None and not budget > 0:
        raise InvalidInput("monthly budget must be a positive amount of dollars")


def cli_actor(email: str | None = None, password: str | None = None) -> UserInfo:
    """The user a CLI command acts as: the local user in ``none`` mode; in ``password`` mode the
    given (or BRIGHTRUN_USER / BRIGHTRUN_PASSWORD) credentials. Raises AuthError."""
    settings = get_settings()
    if settings.auth == "none":
        return ensure_local_user()
    email = email or settings.user
    password = password if password is not None else settings.password
    if not email or password is None:
        raise AuthError("password mode: say who you are with --user EMAIL and BRIGHTRUN_PASSWORD",
                        code="login_required")
    return authenticate(email, password)
