"""Database layer: models, session helper, migrations."""
from backend.db.session import get_engine, session_scope, upgrade  # noqa: F401
