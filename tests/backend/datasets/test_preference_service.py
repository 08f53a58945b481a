"""Preference datasets through the datasets service (the function the validation Ray job runs):
detected, validated with line numbers, counted with the base model's template; the estimate of a
DPO job accounts for the reference passes and a method/dataset mismatch is refused."""
from __future__ import annotations

import io
import json

import pytest

from backend.accounts.users import ensure_local_user
from backend.core.errors import InvalidInput
from backend.datasets import service as ds
from backend.jobs.estimates import build_config, estimate_for_dataset
from tests.fixtures.paths import REPO

DEMO = REPO / "examples" / "preference-demo.jsonl"


@pytest.fixture
def me(db):
    return ensure_local_user()


def _upload(me, data: bytes, name: str = "prefs"):
    info = ds.upload_dataset(me, io.BytesIO(data), "prefs.jsonl", name, size=len(data),
                             submit=False)
    return ds.run_validation(info.id)


def test_demo_preference_set_becomes_ready_with_templated_counts(me):
    info = _upload(me, DEMO.read_bytes())
    assert info.status == "ready" and info.format == "preference"
    assert info.total_conversations == 60 and info.total_tokens > info.assistant_tokens > 0
    assert {"prompt", "chosen", "rejected"} <= set(info.sample_data[0])


def test_bad_rows_get_line_numbered_errors_in_the_report(me):
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"},
            {"prompt": "q", "chosen": "same", "rejected": "same"}]
    info = _upload(me, "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert info.status == "error" and info.error_count == 2
    assert [(e["line"], e["code"]) for e in info.validation_errors] == [
        (2, "invalid_preference_row"), (3, "invalid_preference_row")]
    assert "`rejected`" in info.validation_errors[0]["error"]


def test_dpo_estimate_counts_the_reference_passes_and_refuses_a_mismatch(me):
    info = _upload(me, DEMO.read_bytes())
    sft_like = build_config("balanced", base_model="brightrun/tiny-llama")
    with pytest.raises(InvalidInput, match="method sft cannot train"):
        estimate_for_dataset(me, info.id, sft_like, "cpu-local", 1)
    dpo = build_config("balanced", base_model="brightrun/tiny-llama", overrides=["method=dpo"])
    est = estimate_for_dataset(me, info.id, dpo, "cpu-local", 1)
    assert any("DPO" in a for a in est["assumptions"]) and est["duration_s"] > 0
