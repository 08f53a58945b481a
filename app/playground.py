"""Playground of the Models page: one prompt answered by the base model and by base + adapter,
side by side (greedy decoding, at most ``MAX_NEW_TOKENS`` new tokens, the chat template).

The base model is loaded with ``transformers`` from where ``resolve_base_model`` finds it (never
downloaded); the adapter's files are copied from the object store into a temporary folder and
loaded with ``PeftModel.from_pretrained``. One loaded model per adapter is kept with
``st.cache_resource``; the base answer comes from the same model with the adapter disabled.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import streamlit as st

from app.widgets import literal, show_error
from backend import adapters as models
from backend.errors import BrightRunError, InvalidInput

MAX_NEW_TOKENS = 64
_generate_lock = threading.Lock()  # one generation at a time per loaded model (shared by sessions)


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@st.cache_resource(max_entries=2, show_spinner="Loading the base model and the adapter…")
def load_adapted(model_id: str, base_model: str, _actor) -> tuple:
    """(tokenizer, PeftModel) for a model; access was checked by the caller."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.training.base_models import resolve_base_model
    from backend.config import get_settings
    from backend.training.data import ensure_chat_template

    base_path = resolve_base_model(base_model, get_settings().home)
    folder = Path(tempfile.mkdtemp(prefix=f"brightrun-adapter-{model_id[:8]}-"))
    for f in models.model_files(_actor, model_id):
        target = folder / f["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with models.open_file(_actor, model_id, f["name"]) as src, target.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    has_tokenizer = any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(folder if has_tokenizer else base_path,
                                              local_files_only=True)
    ensure_chat_template(tokenizer)
    device = _device()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True, dtype=dtype)
    try:
        model = PeftModel.from_pretrained(base, str(folder))
    except Exception as exc:  # noqa: BLE001 - broken/foreign adapter files
        raise InvalidInput(f"the adapter files of this model cannot be loaded: {exc}",
                           code="adapter_unloadable") from None
    model.to(device).eval()
    return tokenizer, model


def _answer(tokenizer, model, prompt: str, *, adapter: bool) -> str:
    import contextlib

    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
    with torch.inference_mode(), ctx:
        out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = out[0][ids["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def generate_pair(actor, m, prompt: str) -> dict:
    """{'base': answer, 'adapter': answer} for ``prompt``. Raises NotFound (access), InvalidInput
    (empty prompt, base model not on this machine, unloadable adapter)."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InvalidInput("type a prompt first")
    models.get_model(actor, m.id)  # access check on every use (the loaded model is shared)
    tokenizer, model = load_adapted(m.id, m.base_model, actor)
    with _generate_lock:
        return {"base": _answer(tokenizer, model, prompt, adapter=False),
                "adapter": _answer(tokenizer, model, prompt, adapter=True)}


def playground(actor, m) -> None:
    st.caption(f"Greedy decoding, up to {MAX_NEW_TOKENS} new tokens, with the chat template. "
               "The first run loads the base model (may take a while for big models).")
    prompt = st.text_area("Prompt", key="models_play_prompt", height=90,
                          placeholder="Ask something your dataset is about…")
    if st.button("Generate", key="models_play_run", icon=":material/play_arrow:"):
        try:
            result = generate_pair(actor, m, prompt)
        except BrightRunError as exc:
            show_error(exc)
            return
        st.session_state["models_play_result"] = {"model_id": m.id, "prompt": prompt, **result}
    result = st.session_state.get("models_play_result")
    if not result or result.get("model_id") != m.id:
        return
    c = st.columns(2)
    with c[0].container(border=True):
        st.markdown(f"**Base model** · {literal(m.base_model)}")
        st.markdown(literal(result["base"] or "(no text: only whitespace or special tokens)"))
    with c[1].container(border=True):
        st.markdown(f"**Base + adapter** · {literal(m.name)}")
        st.markdown(literal(result["adapter"] or "(no text: only whitespace or special tokens)"))
