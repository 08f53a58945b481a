"""Serve the dashboard: ``streamlit run app/main.py`` with the dashboard's modules imported first.

    python -m app.serve --server.port 8501 --server.address 127.0.0.1 …   # any `streamlit run` option

Streamlit runs the page scripts in the server's own process, so whatever is imported before the
server starts is not imported again when the first visitor opens a page. Imported here: every
module under ``app/`` (the pages' building blocks) and what they import — SQLAlchemy, Alembic,
pydantic, the services — CPU that a fresh ``streamlit run`` spends inside the first page view
instead (bench/RESULTS.md §6); then :func:`warm` reads the settings, catalogs, the database's
schema check and the installed base models once. Nothing heavy for training (torch, transformers)
is imported: the pages load those only when a feature needs them. The server starts that much
later, before anyone waits on it.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def preload(failed: list[str] | None = None) -> list[str]:
    """Import every module of the ``app`` package and its sub-packages except the entry script; returns their names.
    A module that fails to import is left to fail where a page imports it (with its error shown
    there), not here; ``failed`` collects "module: error" for each."""
    import logging

    import streamlit  # noqa: F401 - configures its loggers first

    import app

    # @st.cache_data checks its parameters against a throw-away in-memory store when no server
    # runs yet and says so; the caches themselves are the server's, looked up at each call
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level, quiet.level = quiet.level, logging.ERROR
    done = []
    try:
        for info in pkgutil.walk_packages(app.__path__, "app."):
            name = info.name.removeprefix("app.")
            if name in ("main", "serve") or info.ispkg:
                continue
            try:
                importlib.import_module(info.name)
                done.append(name)
            except Exception as exc:  # noqa: BLE001 - reported by the page that needs it
                if failed is not None:
                    failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    finally:
        quiet.setLevel(level)
    return done


def warm() -> list[str]:
    """Read once, per process, what the first page view of any visitor reads
    (:func:`backend.warmup.warm`). Returns what could not be read (left to the page, which shows
    the error)."""
    from backend.warmup import warm as warm_backend

    return warm_backend()


def main(argv: list[str] | None = None) -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    failed: list[str] = []
    preload(failed)
    failed += warm()
    for what in failed:  # the server still starts: the page that needs it shows the error
        print(f"brightrun serve: could not prepare {what}", file=sys.stderr)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(ROOT / "app" / "main.py"),
                *(sys.argv[1:] if argv is None else argv)]
    return stcli.main()


if __name__ == "__main__":
    sys.exit(main())
