"""``python -m app.serve``: the dashboard's modules are imported before the server starts, and
nothing for training comes with them."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.paths import REPO

CODE = """
import json, sys
from app.serve import preload
done = preload()
heavy = [m for m in ("torch", "transformers", "peft", "ray") if m in sys.modules]
print(json.dumps({"done": done, "heavy": heavy,
                  "services": [m for m in ("backend.jobs.service", "backend.datasets.service",
                                           "sqlalchemy") if m in sys.modules]}))
"""


def test_preload_imports_every_dashboard_module_and_nothing_for_training():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    modules = sorted(".".join(p.relative_to(REPO / "app").with_suffix("").parts)
                     for p in (REPO / "app").rglob("*.py")
                     if p.stem not in ("main", "serve", "__init__"))
    assert "ui.widgets" in modules and "configure.form" in modules
    assert sorted(got["done"]) == modules
    assert got["heavy"] == [], "a dashboard module imports a training library at import time"
    assert got["services"] == ["backend.jobs.service", "backend.datasets.service", "sqlalchemy"]
    assert "No runtime found" not in out.stderr


def test_warm_reads_what_a_first_view_reads_and_leaves_errors_to_the_page(db, monkeypatch):
    from app.serve import warm
    from backend.core.config import reset_settings
    from backend.db.session import _checked, dispose_engines

    dispose_engines()
    assert not _checked
    assert warm() == []
    assert _checked, "the schema check did not run"
    monkeypatch.setenv("BRIGHTRUN_DATABASE_URL", "postgresql://u:p@127.0.0.1:1/none")
    reset_settings()
    dispose_engines()
    assert warm() == ["database (DatabaseError)"]  # the page shows it; the server starts


def test_the_server_says_what_it_could_not_prepare_and_still_starts(tmp_path):
    """A dashboard module that fails to import, and a database that is down: one line each on
    stderr (the database's without its URL, which may hold a password), then Streamlit starts."""
    code = ("import sys, app.serve as s, streamlit.web.cli as c\n"
            "c.main = lambda: print('STARTED', sys.argv[1:3]) or 0\n"
            "sys.modules['app.ui.charts'] = None\n"  # its import fails: ImportError
            "sys.exit(s.main(['--server.headless', 'true']))\n")
    env = {**__import__("os").environ, "BRIGHTRUN_HOME": str(tmp_path),
           "BRIGHTRUN_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/none"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "STARTED ['run'" in out.stdout
    assert "brightrun serve: could not prepare app.ui.charts: ModuleNotFoundError" in out.stderr
    assert "brightrun serve: could not prepare database (DatabaseError)" in out.stderr
    assert "secret" not in out.stderr
