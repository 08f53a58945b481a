"""The Configure page's form: preset buttons that fill it, the advanced settings (one widget per
TrainingConfig field, with the field's description as tooltip and its bounds as limits) and the
hardware picker. Widget keys are ``configure_<field>``; their values live in ``st.session_state``.

A form value missing from the session (first visit, or Streamlit dropped the widget state after a
page switch) is taken from the last values this session saw, else from the chosen preset.
"""
from __future__ import annotations

import contextlib
import functools
import re
from typing import Any, NamedTuple

import streamlit as st
from annotated_types import Ge, Gt, Le, Lt

from app.configure import draft
from app.ui.widgets import fmt_int, literal
from backend.base_models.specs import ALL_LINEAR
from backend.core.errors import BrightRunError
from backend.jobs import service as jobs
from backend.training import catalogs
from backend.training.config import TrainingConfig, field_help

PRESET_KEY = "configure_preset"
SAVED_KEY = "configure_saved_values"
EXTRA_KEY = "configure_extra"  # fields the form does not show (from a parent model), kept as is
PREFILL_KEY = "configure_prefill"  # set by Models → "Train again": hyperparameters to start from
DEFAULT_PRESET = "balanced"

# field → (label, step, number format); ints have no format
FLOATS = {"learning_rate": ("Learning rate", 1e-5, "%.1e"),
          "lora_dropout": ("LoRA dropout", 0.01, "%.2f"),
          "weight_decay": ("Weight decay", 0.01, "%.3f"),
          "max_grad_norm": ("Max grad norm", 0.1, "%.2f"),
          "validation_fraction": ("Validation fraction", 0.05, "%.2f")}
INTS = {"batch_size": ("Batch size", 1), "num_epochs": ("Epochs", 1),
        "lora_rank": ("LoRA rank", 1), "lora_alpha": ("LoRA alpha", 1),
        "warmup_steps": ("Warmup steps", 10), "gradient_accumulation_steps":
        ("Grad accumulation", 1), "max_seq_length": ("Max sequence length", 128),
        "seed": ("Seed", 1)}
# optional ints (empty = the field's default, None: once per epoch) → (label, step, placeholder)
OPTIONAL_INTS = {"eval_every_steps": ("Eval interval (steps)", 1, "per epoch"),
                 "checkpoint_every_steps": ("Checkpoint interval", 1, "per epoch")}
# optional floats (empty = None) → (label, step, number format, placeholder)
OPTIONAL_FLOATS = {"warmup_ratio": ("Warmup (fraction of run)", 0.05, "%.2f", "none")}
OPTIONAL = (*OPTIONAL_INTS, *OPTIONAL_FLOATS)
GRID = (("learning_rate", "batch_size", "num_epochs"),
        ("lora_rank", "lora_alpha", "lora_dropout"),
        ("warmup_ratio", "warmup_steps", "weight_decay"),
        ("gradient_accumulation_steps", "max_grad_norm", "max_seq_length"),
        ("seed", "validation_fraction", "eval_every_steps"),
        ("checkpoint_every_steps",))
# gradient checkpointing: widget value → config value (auto = none: decided by the estimate)
CHECKPOINTING = {"auto": None, "on": True, "off": False}
CHECKPOINTING_LABELS = {"auto": "Auto (on if it would not fit)", "on": "On", "off": "Off"}
FORM_FIELDS = ("base_model", "target_modules", *FLOATS, *INTS, *OPTIONAL,
               "gradient_checkpointing")
SPLIT_SEED = 0  # the trainer's split seed (ray_jobs.worker.loop.TrainConfig.validation_seed)
EXACT_SPLIT_MAX_BYTES = 128 * 2**20  # larger files: the held-out count is approximated
HARDWARE_LABEL_CHARS = 28  # longer hardware names lose a trailing "(…)" in the select box


def key(field: str) -> str:
    return f"configure_{field}"


def _cast(field: str, value: Any) -> Any:
    if field in FLOATS:
        return float(value)
    if field in INTS:
        return int(value)
    if field in OPTIONAL_INTS:
        return None if value is None else int(value)
    if field in OPTIONAL_FLOATS:
        return None if value is None else float(value)
    if field == "target_modules":
        return list(value)
    if field == "gradient_checkpointing":
        return value if value in CHECKPOINTING else \
            next((k for k, v in CHECKPOINTING.items() if v is value), "auto")
    return value


def preset_values(preset_id: str) -> dict[str, Any]:
    """Every form field as the preset sets it (base model: the configured default). Raises
    NotFound for an unknown preset."""
    from backend.base_models.registry import default_base_model

    return {f: (list(v) if isinstance(v, list) else v) for f, v in
            _preset_values(preset_id, default_base_model())}


@functools.lru_cache(maxsize=32)
def _preset_values(preset_id: str, default_base_model: str) -> tuple:
    """Cached per preset and default base model (the configured one, else SmolLM2 once installed;
    the catalog is read once)."""
    config = jobs.build_config(preset_id).model_dump(mode="json")
    return tuple((f, config[f]) for f in FORM_FIELDS)


def apply_values(values: dict[str, Any], *, keep_base_model: bool = False) -> None:
    for field in FORM_FIELDS:
        if field in values and not (keep_base_model and field == "base_model"
                                    and st.session_state.get(key(field))):
            st.session_state[key(field)] = _cast(field, values[field])


def choose_preset(preset_id: str) -> None:
    """Button callback: fill the form with the preset (the chosen base model stays)."""
    st.session_state[PRESET_KEY] = preset_id
    apply_values(preset_values(preset_id), keep_base_model=True)


KINDS: dict[str, type] = {"base_model": str, "target_modules": list,
                          **{f: float for f in FLOATS}, **{f: int for f in INTS},
                          **{f: type(None) for f in OPTIONAL_INTS},
                          **{f: float for f in OPTIONAL_FLOATS},  # "none" → None (decode)
                          "gradient_checkpointing": str}  # the widget's "auto" / "on" / "off"


def _apply_draft(d: dict[str, Any], *, only_missing: bool) -> None:
    """Put a draft's values into the widgets' keys (all of them, or only those missing)."""
    ss = st.session_state
    if not only_missing or PRESET_KEY not in ss:
        ss[PRESET_KEY] = d.get("preset") or DEFAULT_PRESET
    for field, value in (d.get("values") or {}).items():
        if field in FORM_FIELDS and (not only_missing or key(field) not in ss):
            with contextlib.suppress(TypeError, ValueError):
                ss[key(field)] = _cast(field, value)
    for name in ("hardware", "workers"):
        if d.get(name) and (not only_missing or key(name) not in ss):
            ss[key(name)] = d[name]


def init_state(dataset_id: str) -> None:
    """Fill the form's widget keys before the widgets are drawn: a parent model's hyperparameters
    once when asked (Models → "Train again"); on a switch to another dataset, that dataset's draft
    (if it has one; else the form keeps its values); any value still missing (first visit, or the
    page was left and Streamlit dropped its widgets' state) from the dataset's draft in the
    session, else the URL's (a reload), else the chosen preset."""
    ss = st.session_state
    drafts = ss.setdefault(draft.DRAFTS_KEY, {})
    prefill = ss.pop(PREFILL_KEY, None)
    if prefill:
        ss[PRESET_KEY] = prefill.get("preset_id") or "custom"
        hyper = dict(prefill.get("hyperparameters") or {})
        apply_values(hyper)
        ss[EXTRA_KEY] = {k: v for k, v in hyper.items()
                         if k not in FORM_FIELDS and k in TrainingConfig.model_fields}
    else:
        switched = ss.get(draft.DRAFT_FOR_KEY) != dataset_id
        saved = drafts.get(dataset_id)
        if saved is None and (switched or not all(key(f) in ss for f in FORM_FIELDS)):
            saved = draft.from_query(dict(st.query_params), KINDS, preset_values)
        if saved is not None:
            _apply_draft(saved, only_missing=not switched)
    ss[draft.DRAFT_FOR_KEY] = dataset_id
    preset = ss.setdefault(PRESET_KEY, DEFAULT_PRESET)
    if all(key(f) in ss for f in FORM_FIELDS):
        return
    fallback = {**preset_values(preset), **ss.get(SAVED_KEY, {})}
    for field in FORM_FIELDS:
        if key(field) not in ss:
            ss[key(field)] = _cast(field, fallback[field])


def save_draft(dataset_id: str, preset: str, values: dict[str, Any], hw_id: str,
               workers: int) -> None:
    """Keep what the form shows as ``dataset_id``'s draft (session) and in the URL."""
    d = {"preset": preset, "values": dict(values), "hardware": hw_id, "workers": int(workers)}
    st.session_state.setdefault(draft.DRAFTS_KEY, {})[dataset_id] = d
    try:  # compared as the widgets hold them (gradient checkpointing None → "auto")
        ref = {f: _cast(f, v) for f, v in preset_values(preset).items()}
    except BrightRunError:
        ref = {}
    query = draft.to_query(d, ref)
    for name in list(st.query_params):
        if (name in FORM_FIELDS or name in draft.QUERY_KEYS) and name not in query:
            del st.query_params[name]
    for name, text in query.items():
        if st.query_params.get(name) != text:
            st.query_params[name] = text


def preset_buttons() -> str:
    """The preset buttons (two per row) with their descriptions; returns the chosen preset id."""
    chosen = st.session_state.get(PRESET_KEY, DEFAULT_PRESET)
    st.markdown("#### Preset")
    presets = catalogs.list_presets()
    cols = []
    for _ in range(0, len(presets), 2):  # four in a row cut "Conservative" off
        cols += st.columns(2)
    for col, p in zip(cols, presets):
        with col:
            st.button(p.name, key=f"configure_preset_{p.id}", width="stretch",
                      type="primary" if p.id == chosen else "secondary",
                      on_click=choose_preset, args=(p.id,),
                      icon=":material/check:" if p.id == chosen else None)
            st.caption(literal(p.description))
    return chosen


def _help(name: str) -> str:
    row = next(r for r in field_help() if r.name == name)
    extra = f"Allowed: {row.bounds}. " if row.bounds else ""
    return f"{row.description}\n\n{extra}Default: {row.default}."


def _bounds(name: str, step: float) -> tuple[Any, Any]:
    lo = hi = None
    for meta in TrainingConfig.model_fields[name].metadata:
        if isinstance(meta, Ge):
            lo = meta.ge
        elif isinstance(meta, Gt):
            lo = meta.gt
        elif isinstance(meta, Le):
            hi = meta.le
        elif isinstance(meta, Lt):
            hi = round(meta.lt - step, 6)
    return lo, hi


def _number(name: str) -> None:
    if name in FLOATS:
        label, step, fmt = FLOATS[name]
        lo, hi = _bounds(name, step)
        st.number_input(label, min_value=float(lo) if lo is not None else None,
                        max_value=float(hi) if hi is not None else None, step=float(step),
                        format=fmt, key=key(name), help=_help(name))
    elif name in OPTIONAL_INTS:
        label, step, placeholder = OPTIONAL_INTS[name]
        lo, hi = _bounds(name, step)
        st.number_input(label, min_value=lo, max_value=hi, step=step, value=None,
                        placeholder=placeholder, key=key(name), help=_help(name))
    elif name in OPTIONAL_FLOATS:
        label, step, fmt, placeholder = OPTIONAL_FLOATS[name]
        lo, hi = _bounds(name, step)
        st.number_input(label, min_value=float(lo), max_value=float(hi), step=step, value=None,
                        format=fmt, placeholder=placeholder, key=key(name), help=_help(name))
    else:
        label, step = INTS[name]
        lo, hi = _bounds(name, step)
        st.number_input(label, min_value=lo, max_value=hi, step=step, key=key(name),
                        help=_help(name))


def _module_options(current: list[str]) -> list[str]:
    return list(ALL_LINEAR) + [m for m in current if m not in ALL_LINEAR]


def advanced_settings() -> dict[str, Any]:
    """The hyperparameter widgets in an expander; returns the form values."""
    from app.configure import base_model_picker as picker
    picker.install_status(key("base_model"))
    if key("base_model") not in st.session_state:
        st.session_state[key("base_model")] = preset_values(DEFAULT_PRESET)["base_model"]
    with st.expander("Advanced settings", icon=":material/tune:"):
        options, infos = picker.options(st.session_state.get(key("base_model"), ""))
        st.selectbox("Base model", options, key=key("base_model"), accept_new_options=True,
                     format_func=lambda n: picker.label(n, infos),
                     help=_help("base_model") + " Type a local folder path to use another model.")
        st.multiselect("Target modules", _module_options(
            st.session_state.get(key("target_modules"), [])), key=key("target_modules"),
            accept_new_options=True, help=_help("target_modules"))
        for row in GRID:
            for col, name in zip(st.columns(len(row), vertical_alignment="bottom"), row):
                with col:
                    _number(name)
        st.selectbox("Gradient checkpointing", list(CHECKPOINTING),
                     key=key("gradient_checkpointing"), format_func=CHECKPOINTING_LABELS.get,
                     help=_help("gradient_checkpointing"))
    values = {f: st.session_state.get(key(f)) for f in FORM_FIELDS}
    st.session_state[SAVED_KEY] = dict(values)
    return values


METHOD_LABELS = {"sft": "SFT: conversations", "dpo": "DPO: preference pairs"}
METHOD_FOR_KEY = "configure_method_for"  # the dataset format the method was last defaulted for


def method_choice(dataset_format: str | None) -> dict[str, Any]:
    """The training method (defaulting to the one the dataset's format fits: DPO for preference
    pairs, SFT otherwise) and, for DPO, β. Returns the form values to add."""
    ss = st.session_state
    if ss.get(METHOD_FOR_KEY) != dataset_format or key("method") not in ss:
        ss[METHOD_FOR_KEY] = dataset_format
        ss[key("method")] = "dpo" if dataset_format == "preference" else "sft"
    method = st.radio("Training method", list(METHOD_LABELS), key=key("method"), horizontal=True,
                      format_func=METHOD_LABELS.get, help=_help("method"))
    if method != "dpo":
        return {"method": method}
    ss.setdefault(key("dpo_beta"), TrainingConfig.model_fields["dpo_beta"].default)
    beta = st.number_input("DPO β", min_value=0.001, max_value=10.0, step=0.05, format="%.3f",
                           key=key("dpo_beta"), help=_help("dpo_beta"))
    return {"method": method, "dpo_beta": float(beta), "dpo_loss_type": "sigmoid"}


def summary_caption(values: dict[str, Any], preset: str) -> str:
    modified = is_modified(values, preset)
    return (f"Preset **{literal(preset)}**{' (modified)' if modified else ''} · base model "
            f"{literal(values['base_model'])} · learning rate {values['learning_rate']:.1e} · "
            f"batch {values['batch_size']} · {values['num_epochs']} epoch(s) · LoRA rank "
            f"{values['lora_rank']}, alpha {values['lora_alpha']}")


def is_modified(values: dict[str, Any], preset: str) -> bool:
    """Whether the form differs from the preset (base model aside)."""
    try:
        ref = preset_values(preset)
    except Exception:  # noqa: BLE001 - an unknown preset counts as modified
        return True
    return any(_cast(f, values.get(f)) != _cast(f, ref[f]) for f in FORM_FIELDS
               if f != "base_model" and (values.get(f) is not None or f in OPTIONAL))


def job_preset(values: dict[str, Any], preset: str) -> str:
    """Preset id recorded on the job: the chosen one, or 'custom' once the form was changed."""
    return "custom" if is_modified(values, preset) else preset


def overrides(values: dict[str, Any]) -> dict[str, Any]:
    """What create_job / build_config get on top of the preset: every form value (an empty
    optional field is sent as None: once per epoch)."""
    out = dict(st.session_state.get(EXTRA_KEY) or {})
    out.update({f: v for f, v in values.items() if v is not None or f in OPTIONAL})
    if out.get("gradient_checkpointing") in CHECKPOINTING:
        out["gradient_checkpointing"] = CHECKPOINTING[out["gradient_checkpointing"]]
    return out


def hardware_labels(hardware) -> dict[str, str]:
    """Select-box label per hardware id: its name, without a trailing "(…)" when the name is long
    (the details follow in a caption below) and the short names stay distinct."""
    short = {h.id: (re.sub(r"\s*\([^()]*\)$", "", h.name) if len(h.name) > HARDWARE_LABEL_CHARS
                    else h.name) or h.name for h in hardware}
    if len(set(short.values())) < len(short):
        return {h.id: h.name for h in hardware}
    return short


def hardware_picker() -> tuple[str, int]:
    """Hardware select (short labels: the narrow column cuts long ones off at ~1200 px) and a
    worker count bounded by the hardware's max_workers; memory, price and notes in a caption."""
    hardware = catalogs.list_hardware()
    by_id = {h.id: h for h in hardware}
    labels = hardware_labels(hardware)
    ids = list(by_id)
    if st.session_state.get("configure_hardware") not in by_id:
        st.session_state["configure_hardware"] = "cpu-local" if "cpu-local" in by_id else ids[0]
    st.markdown("#### Hardware")
    c = st.columns([3, 1])
    hw_id = c[0].selectbox(
        "Worker type", ids, key="configure_hardware", format_func=labels.__getitem__,
        help="Each worker holds the whole model (data parallel); price is per worker-hour.")
    hw = by_id[hw_id]
    workers = int(st.session_state.get("configure_workers") or 1)
    st.session_state["configure_workers"] = min(max(workers, 1), hw.max_workers)
    workers = c[1].number_input("Workers", min_value=1, max_value=hw.max_workers, step=1,
                                key="configure_workers",
                                help=f"Data-parallel workers (1 to {hw.max_workers} of this type).")
    what = "GPU memory" if hw.kind == "gpu" else "memory"
    details = (f"{hw.name} · {hw.memory_gb:g} GB {what} per worker · "
               f"${hw.cost_per_gpu_hour:,.2f} per worker-hour · up to {hw.max_workers} workers")
    st.caption(literal(details + (f". {hw.memory_note[:1].upper()}{hw.memory_note[1:]}."
                                  if hw.memory_note else "")))
    return hw_id, int(workers)


# ----- the validation split of the chosen fraction ----------------------------------------------
class SplitKeys(NamedTuple):
    """Per conversation of a dataset file, in file order: its id and its assistant turns."""

    keys: list[str]  # conversation ids
    pairs: list[int]


@st.cache_resource(max_entries=16, show_spinner="Counting the validation split…")
def _split_keys(dataset_id: str) -> SplitKeys:
    """One read of the dataset file (the trainer's parser) per dataset and server process.
    Raises what opening or parsing raises."""
    from backend.datasets import service as ds
    from backend.datasets.formats import iter_conversations

    keys, pairs = [], []
    with contextlib.closing(ds.open_dataset(dataset_id)) as fh:
        for _, conv in iter_conversations(fh):
            keys.append(conv.conversation_id)
            pairs.append(sum(1 for t in conv.turns if t.get("role") == "assistant"))
    return SplitKeys(keys, pairs)


@st.cache_data(max_entries=512, show_spinner=False)
def held_out(dataset_id: str, fraction: float) -> tuple[int, int]:
    """(conversations, assistant pairs) the trainer holds out for validation at ``fraction``:
    exactly ``backend.datasets.formats.load_split``'s split (``plan.held_out_indices``). Raises what
    reading the file raises."""
    from backend.training.plan import held_out_indices

    split = _split_keys(dataset_id)
    held = held_out_indices(split.keys, fraction, SPLIT_SEED)
    return len(held), sum(split.pairs[i] for i in held)


def split_caption(dataset, fraction: float | None) -> tuple[str, str]:
    """(caption, tooltip) on how much of ``dataset`` the chosen validation fraction holds out:
    counted exactly from the file (cached per dataset and fraction), or approximated when the file
    is large or cannot be read."""
    fraction = float(fraction or 0.0)
    if fraction <= 0.0:
        return ("no validation split (validation fraction 0): every conversation is trained on",
                "Set a validation fraction under Advanced settings to measure validation loss.")
    rule = ("The split is exact and deterministic: round(fraction × conversations) are held out "
            "(at least 1 of 2 or more), those with the smallest hash of their id "
            f"(split seed {SPLIT_SEED}), so the same conversations are "
            "held out on every run; the training Seed does not change it.")
    size = int(getattr(dataset, "file_size", 0) or 0)
    if size <= EXACT_SPLIT_MAX_BYTES:
        try:
            conversations, pairs = held_out(dataset.id, fraction)
        except (BrightRunError, OSError):
            why = "the dataset file could not be read here"
        else:
            return (f"{fmt_int(conversations)} of {fmt_int(dataset.total_conversations)} "
                    f"conversation(s) ({fmt_int(pairs)} validation pair(s)) held out at validation "
                    f"fraction {fraction:.2f}",
                    f"Counted from the dataset file with the trainer's split. {rule}")
    else:
        why = f"the file ({size / 2**20:,.0f} MB) is too large to read on every visit"
    total = int(dataset.total_conversations or 0)
    from backend.training.plan import held_out_count

    return (f"{fmt_int(held_out_count(total, fraction))} of {fmt_int(total)} conversation(s) held "
            f"out at validation fraction {fraction:.2f}",
            f"round(fraction × conversations); which ones depends on each conversation's id, and "
            f"the validation pairs they hold are not counted here: {why}. {rule}")
