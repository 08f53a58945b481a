"""Playground of the Models page: one prompt answered by the base model and by base + adapter,
side by side (greedy decoding, at most ``MAX_NEW_TOKENS`` new tokens, the chat template); the
held-out prompts of the model's evaluation samples are offered as ready-made prompts, asked in
their conversation (system prompt and earlier turns, rendered as in training) until edited.

The base model is loaded with ``transformers`` from where ``resolve_base_model`` finds it (never
downloaded; a model that is not on this machine is a clear error before anything loads); the
adapter's files are copied from the object store into a temporary folder and loaded with
``PeftModel.from_pretrained``. The loaded model is kept per process with ``st.cache_resource``,
keyed by (adapter id, base model path): only the first use waits for the load. The base answer
comes from the same model with the adapter disabled.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import streamlit as st

from app.ui.samples import answer_markdown
from app.ui.widgets import literal, show_error
from backend import adapters as models
from backend.core.errors import BrightRunError, InvalidInput
from backend.jobs.samples import base_vs_adapter, job_samples

MAX_NEW_TOKENS = 64
_generate_lock = threading.Lock()  # one generation at a time per loaded model (shared by sessions)


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def base_model_path(base_model: str) -> str:
    """Where the base model is on this machine. Raises InvalidInput (code
    ``base_model_unavailable``) with what to do when it is not here."""
    from backend.base_models.registry import resolve_base_model
    from backend.core.config import get_settings

    return resolve_base_model(base_model, get_settings().home)


@st.cache_resource(max_entries=2, show_spinner="Loading the base model and the adapter…")
def load_adapted(model_id: str, base_path: str, _actor) -> tuple:
    """(tokenizer, PeftModel) for adapter ``model_id`` over the base model at ``base_path``, kept
    per process for each (base path, adapter id); access was checked by the caller. Raises
    InvalidInput when the adapter's files are missing or cannot be loaded."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.training.data import ensure_chat_template

    files = models.model_files(_actor, model_id)
    if not any(f["name"] == "adapter_config.json" for f in files):
        raise InvalidInput("this model's adapter files are missing from storage, so it cannot be "
                           "loaded", code="adapter_unloadable",
                           hint="train it again from this page (Train again)")
    folder = Path(tempfile.mkdtemp(prefix=f"brightrun-adapter-{model_id[:8]}-"))
    for f in files:
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


def prompt_ids(tokenizer, prompt: str, context: str | None = None) -> dict:
    """The model's input for ``prompt``: one user turn through the chat template, or, when
    ``context`` is given (a held-out sample's prompt as rendered in training: its system prompt and
    earlier turns, with the generation prompt), exactly that text."""
    if context:
        return tokenizer(context, add_special_tokens=False, return_tensors="pt")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                         add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)


def _answer(tokenizer, model, prompt: str, *, adapter: bool, context: str | None = None) -> str:
    import contextlib

    import torch

    ids = prompt_ids(tokenizer, prompt, context)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
    with torch.inference_mode(), ctx:
        out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = out[0][ids["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def generate_pair(actor, m, prompt: str, context: str | None = None) -> dict:
    """{'base': answer, 'adapter': answer} for ``prompt`` (in its conversation's ``context`` when
    given, see :func:`prompt_ids`). Raises NotFound (access), InvalidInput (empty prompt, base
    model not on this machine, unloadable adapter)."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InvalidInput("type a prompt first")
    models.get_model(actor, m.id)  # access check on every use (the loaded model is shared)
    tokenizer, model = load_adapted(m.id, base_model_path(m.base_model), actor)
    with _generate_lock:
        return {"base": _answer(tokenizer, model, prompt, adapter=False, context=context),
                "adapter": _answer(tokenizer, model, prompt, adapter=True, context=context)}


def _use_prompt(question: str, rendered: str) -> None:
    st.session_state["models_play_prompt"] = question
    st.session_state["models_play_context"] = {"question": question, "rendered": rendered}


def held_out_context(prompt: str) -> str | None:
    """The rendered conversation of the held-out prompt the user picked, while the prompt box
    still holds its question unchanged (an edited prompt is asked on its own)."""
    chosen = st.session_state.get("models_play_context")
    if chosen and chosen.get("rendered") and (prompt or "").strip() == chosen["question"].strip():
        return chosen["rendered"]
    return None


def _held_out_prompts(actor, m) -> None:
    """Buttons that fill the prompt with the questions of the model's evaluation samples; asked
    in their conversation (system prompt, earlier turns), as in the samples recorded in training."""
    try:
        rows = base_vs_adapter(job_samples(actor, m.job_id))
    except BrightRunError:
        rows = []
    if not rows:
        return
    st.caption("Held-out prompts of this model's dataset (see Overview for the answers recorded "
               "during training):")
    cols = st.columns(len(rows))
    for col, row in zip(cols, rows):
        col.button(_short(row["question"]), key=f"models_play_use_{row['index']}",
                   on_click=_use_prompt, args=(row["question"], row.get("prompt") or ""),
                   width="stretch", help=row["question"])


def _short(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def playground(actor, m) -> None:
    st.caption(f"Greedy decoding, up to {MAX_NEW_TOKENS} new tokens, with the chat template. "
               "The first run loads the base model (may take a while for big models).")
    _held_out_prompts(actor, m)
    prompt = st.text_area("Prompt", key="models_play_prompt", height=90,
                          placeholder="Ask something your dataset is about…")
    context = held_out_context(prompt)
    if context:
        st.caption("Asked in its conversation — with its system prompt and earlier turns, as in "
                   "the samples recorded during training. Edit the prompt to ask it on its own.")
    if st.button("Generate", key="models_play_run", icon=":material/play_arrow:"):
        try:
            result = generate_pair(actor, m, prompt, context)
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
        st.markdown(answer_markdown(result["base"]))
    with c[1].container(border=True):
        st.markdown(f"**Base + adapter** · {literal(m.name)}")
        st.markdown(answer_markdown(result["adapter"]))
