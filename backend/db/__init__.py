"""Database layer: models, session helper, migrations."""
from backend.db.session import session_scope, get_engine, upgrade  # noqa: F401
