"""What the first page view of any visitor reads, read once per server process: the settings,
the catalogs, the database engine and its schema check, the base models on this machine. The
dashboard's server (``app.serve``) calls :func:`warm` before it serves the first page."""
from __future__ import annotations


def warm() -> list[str]:
    """Run each warm-up step; return the names of those that failed (the page shows the error
    itself when it reads the same thing), never raise."""
    from backend.base_models import specs
    from backend.base_models.registry import available_base_models
    from backend.core.config import get_settings
    from backend.db.session import get_engine
    from backend.training import catalogs

    steps = {"settings": get_settings, "database": get_engine,
             "catalogs": lambda: (catalogs.list_presets(), catalogs.list_hardware(),
                                  specs.list_models()),
             "base models": available_base_models}
    failed = []
    for name, step in steps.items():
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down: the page says so
            failed.append(f"{name} ({type(exc).__name__})")  # its text may hold a URL
    return failed
