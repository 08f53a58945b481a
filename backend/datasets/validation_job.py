"""Glue between the object store, the tokenizer of the default base model and the pure validator."""
from __future__ import annotations

import functools
import logging

from backend.config import get_settings
from backend.storage import get_object_store

log = logging.getLogger(__name__)
PARALLEL_MIN_BYTES = 64 * 1024 * 1024  # local files this big are validated by several processes


@functools.lru_cache(maxsize=4)
def load_tokenizer(base_model: str):
    """The (fast) tokenizer of ``base_model`` resolved locally. Raises InvalidInput when the model is
    not on this machine."""
    from transformers import AutoTokenizer

    from backend.training.base_models import resolve_base_model

    path = resolve_base_model(base_model, get_settings().home)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def validate_object(key: str, *, declared_format: str | None, max_seq_length: int = 2048,
                    base_model: str | None = None):
    """Validate the object at ``key`` streaming, counting tokens with the base model's tokenizer.
    Returns a ``ValidationReport``."""
    from backend.datasets.validation import tokenizer_counter, validate_stream

    from backend.training.base_models import default_base_model

    model = base_model or default_base_model()
    tokenizer = load_tokenizer(model)
    name = f"{model} ({type(tokenizer).__name__}, vocab {len(tokenizer)})"
    store = get_object_store()
    uri = store.uri(key)
    if uri.startswith("file://") and store.size(key) >= PARALLEL_MIN_BYTES:
        from backend.training.base_models import resolve_base_model
        from backend.datasets.validation_parallel import validate_path

        folder = resolve_base_model(model, get_settings().home)
        return validate_path(uri, tokenizer_path=str(folder), declared_format=declared_format,
                             max_seq_length=max_seq_length, tokenizer_name=name)
    with store.open(key) as fh:
        return validate_stream(fh, declared_format=declared_format,
                               count_tokens=tokenizer_counter(tokenizer),
                               max_seq_length=max_seq_length, tokenizer_name=name)
