"""Page tests: the dashboard run with Streamlit's AppTest against a fresh embedded home.

``app_env``: fresh BRIGHTRUN_HOME (SQLite + local objects), engines disposed before and after.
``no_ray``: validation submissions are recorded instead of sent to Ray (plain page tests run the
validation in-process with ``backend.datasets.service.run_validation``).
"""
from __future__ import annotations

import io
import json

import pytest
from streamlit.testing.v1 import AppTest

from backend.db.session import dispose_engines
from tests.fixtures.paths import REPO

ROOT = REPO
MAIN = ROOT / "app" / "main.py"
TIMEOUT = 30


@pytest.fixture
def app_env(brightrun_home):
    dispose_engines()
    yield brightrun_home
    dispose_engines()


@pytest.fixture
def no_ray(monkeypatch):
    """Record validation submissions instead of starting a Ray job; yields the dataset ids."""
    import backend.datasets.service

    submitted: list[str] = []
    monkeypatch.setattr(backend.datasets.service, "submit_validation",
                        lambda dataset_id: submitted.append(dataset_id))
    return submitted


@pytest.fixture
def actor(app_env):
    from backend.accounts.users import ensure_local_user

    return ensure_local_user()


def open_app(page: str | None = None, query: dict | None = None) -> AppTest:
    """Run the app (Home), then switch to ``page`` (a file stem in pages/) if given."""
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    if page:
        for key, value in (query or {}).items():
            at.query_params[key] = value
        at.switch_page(f"../pages/{page}.py").run(timeout=TIMEOUT)
    return at


def conversation(i: int, text: str = "") -> dict:
    return {"conversation_id": f"c{i}", "turns": [
        {"role": "system", "content": "You are a helpful support agent."},
        {"role": "user", "content": f"Question number {i}: where is my order? {text}"},
        {"role": "assistant", "content": f"Answer {i}: it ships tomorrow. {text}"}]}


def jsonl(n: int = 12, text: str = "") -> bytes:
    return "".join(json.dumps(conversation(i, text)) + "\n" for i in range(n)).encode()


def make_dataset(actor, name: str, n: int = 12, *, validate: bool = True, content: bytes = None):
    """A dataset created through the service (no Ray); validated in-process when asked."""
    from backend.datasets import service as datasets

    data = content if content is not None else jsonl(n)
    info = datasets.upload_dataset(actor, io.BytesIO(data), "data.jsonl", name, size=len(data),
                                   submit=False)
    return datasets.run_validation(info.id) if validate else info


def texts(at: AppTest) -> str:
    """Every markdown / caption / alert / title text on the page, one per line."""
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "success", "warning",
                 "error"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


@pytest.fixture
def media(monkeypatch):
    """What st.download_button handed to the browser: {file name: bytes}."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        files[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files
