"""Engine and session helper: one engine per database URL, a session scope that commits, rolls back
and turns database errors into :class:`~backend.core.errors.DatabaseError`.

Schema handling: an empty embedded (SQLite) database is created automatically by running the Alembic
migrations; any database whose schema is behind the code is refused with the command to run
(``brightrun db upgrade``).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.core.config import Settings, get_settings
from backend.core.errors import BrightRunError, Conflict, DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_engines: dict[str, Engine] = {}
_checked: set[str] = set()
_lock = threading.Lock()


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (SQLite gets foreign keys, WAL and a busy timeout)."""
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
        return engine
    return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True, pool_recycle=1800,
                         connect_args={"connect_timeout": 5})


def get_engine(settings: Settings | None = None) -> Engine:
    """The engine for the configured database, schema checked once per process.

    Raises DatabaseError when the database is unreachable or its schema is out of date.
    """
    settings = settings or get_settings()
    url = _normalise_url(settings.database_url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        if url not in _checked:
            check_schema(engine, auto_create=settings.db_is_local)
            _checked.add(url)
    return engine


def after_fork() -> None:
    """In a process forked from one that used the database: let the inherited engines forget
    the parent's pooled connections without closing them (SQLAlchemy's ``dispose(close=False)``);
    this process opens its own on first use. Raises nothing."""
    for engine in list(_engines.values()):
        engine.dispose(close=False)


def dispose_engines() -> None:
    """Forget cached engines (tests, settings changes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _checked.clear()


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str | None = None) -> str:
    """Run migrations up to head on ``url`` (default: configured database). Returns the revision.

    Raises DatabaseError when the database cannot be reached.
    """
    from alembic import command

    url = _normalise_url(url or get_settings().database_url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = _alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return current_revision(engine) or ""
    except OperationalError as exc:
        raise _unreachable(url, exc) from None
    finally:
        engine.dispose()
        _checked.discard(url)


def check_schema(engine: Engine, *, auto_create: bool) -> None:
    """Refuse an out-of-date schema; create an empty one when ``auto_create``.

    Raises DatabaseError (code ``schema_out_of_date``) naming ``brightrun db upgrade``.
    """
    url = engine.url.render_as_string(hide_password=False)
    try:
        current = current_revision(engine)
        tables = inspect(engine).get_table_names()
    except OperationalError as exc:
        raise _unreachable(url, exc) from None
    head = head_revision()
    if current == head:
        return
    if current is None and not [t for t in tables if t != "alembic_version"] and auto_create:
        upgrade(url)
        return
    raise DatabaseError(
        f"The database schema is out of date (at {current or 'empty'}, code needs {head}).",
        code="schema_out_of_date", hint="run: brightrun db upgrade")


def _unreachable(url: str, exc: Exception) -> DatabaseError:
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    return DatabaseError(f"Cannot reach the database {shown}: {first}", code="database_unreachable",
                         hint="check BRIGHTRUN_DATABASE_URL")


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    Raises DatabaseError (unreachable, other database errors) or Conflict (integrity violations);
    our own BrightRunErrors pass through unchanged after the rollback.
    """
    engine = get_engine(settings)
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BrightRunError:
        session.rollback()
        raise
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"The change conflicts with existing data: {str(exc.orig).splitlines()[0]}",
                       code="integrity_error") from None
    except OperationalError as exc:
        session.rollback()
        raise _unreachable(engine.url.render_as_string(hide_password=False), exc) from None
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseError(f"Database error: {exc.__class__.__name__}: {exc}") from None
    finally:
        session.close()
