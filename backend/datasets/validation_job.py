"""Glue between the object store, the tokenizer of the default base model and the pure validator."""
from __future__ import annotations

import contextlib
import dataclasses
import logging

from backend.core.config import get_settings
from backend.core.errors import InvalidInput
from backend.datasets.templated import (
    EXACT_PLAN_MAX_BYTES,
    count_stream,
    load_tokenizer,
    remember_counts,
    token_statistics,
    tokenizer_name,
)
from backend.storage import get_object_store

log = logging.getLogger(__name__)
PARALLEL_MIN_BYTES = 64 * 1024 * 1024  # local files this big are validated by several processes


def validate_object(key: str, *, declared_format: str | None, max_seq_length: int = 2048,
                    base_model: str | None = None):
    """Validate the object at ``key`` streaming, counting tokens with the base model's tokenizer;
    then, for a valid file up to EXACT_PLAN_MAX_BYTES, replace the token statistics by templated
    counts (the base model's chat template, as the trainer encodes: :func:`with_templated_tokens`).
    Returns a ``ValidationReport``."""
    from backend.base_models.registry import default_base_model
    from backend.datasets import preference

    with contextlib.closing(get_object_store().open(key)) as fh:
        if declared_format == preference.PREFERENCE or preference.first_row_is_preference(fh):
            model = base_model or default_base_model()
            tokenizer = load_tokenizer(model)
            with contextlib.closing(get_object_store().open(key)) as pairs:
                found = preference.validate_preferences(pairs, tokenizer, max_seq_length)
            return preference.to_validation_report(found, tokenizer_name(model, tokenizer))
    report = _validate(key, declared_format, max_seq_length, base_model)

    return with_templated_tokens(report, key, base_model or default_base_model(), max_seq_length)


def with_templated_tokens(report, key: str, base_model: str, max_seq_length: int):
    """``report`` with its statistics' token fields counted as the trainer counts them (templated
    tokens, turn-aware truncation at ``max_seq_length``, see backend/datasets/templated.py). A
    report with errors, a file too large, or one the template cannot encode keeps the text
    counts (logged). Raises nothing."""
    store = get_object_store()
    size = store.size(key)
    if not report.ok or size > EXACT_PLAN_MAX_BYTES:
        return report
    try:
        tokenizer = load_tokenizer(base_model)
        with contextlib.closing(store.open(key)) as fh:
            tokens = count_stream(fh, tokenizer, max_seq_length,
                                  tokenizer_name(base_model, tokenizer))
    except InvalidInput as exc:
        log.warning("templated token counting skipped for %s: %s", key, exc)
        return report
    remember_counts(key, size, base_model, tokens)  # Configure plans from them without a tokenizer
    fields = token_statistics(tokens)
    stats = report.stats
    turns = stats.total_turns or 0
    stats = dataclasses.replace(
        stats, **{k: v for k, v in fields.items() if hasattr(stats, k)},
        avg_tokens_per_turn=round(fields["total_tokens"] / turns, 2) if turns else 0.0)
    return dataclasses.replace(report, stats=stats)


def _validate(key: str, declared_format: str | None, max_seq_length: int,
              base_model: str | None):
    from backend.base_models.registry import default_base_model
    from backend.datasets.validation import tokenizer_counter, validate_stream

    model = base_model or default_base_model()
    tokenizer = load_tokenizer(model)
    name = f"{model} ({type(tokenizer).__name__}, vocab {len(tokenizer)})"
    store = get_object_store()
    uri = store.uri(key)
    if uri.startswith("file://") and store.size(key) >= PARALLEL_MIN_BYTES:
        from backend.base_models.registry import resolve_base_model
        from backend.datasets.validation_parallel import validate_path

        folder = resolve_base_model(model, get_settings().home)
        return validate_path(uri, tokenizer_path=str(folder), declared_format=declared_format,
                             max_seq_length=max_seq_length, tokenizer_name=name)
    with store.open(key) as fh:
        return validate_stream(fh, declared_format=declared_format,
                               count_tokens=tokenizer_counter(tokenizer),
                               max_seq_length=max_seq_length, tokenizer_name=name)
