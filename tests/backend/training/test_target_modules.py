"""Target modules are checked against the base model's linear layers when the model is on this
machine, at estimate and create time, with the valid names in the message."""
from __future__ import annotations

import json

import pytest

from backend.base_models.specs import ALL_LINEAR
from backend.core.errors import InvalidInput
from backend.training.target_modules import check_target_modules, local_module_names, model_module_names

LLAMA = frozenset(ALL_LINEAR)


@pytest.mark.parametrize("requested,bad", [
    (["q_proj", "v_proj"], []),
    (["all-linear"], []),
    (list(ALL_LINEAR), []),
    (["model.layers.0.self_attn.q_proj"], []),
    (["q_porj"], ["'q_porj'"]),
    (["q_proj", "c_attn", "dense"], ["'c_attn'", "'dense'"]),
])
def test_check_target_modules(requested, bad):
    if not bad:
        check_target_modules(requested, LLAMA, "m")
        return
    with pytest.raises(InvalidInput) as err:
        check_target_modules(requested, LLAMA, "m")
    assert err.value.code == "unknown_target_module"
    for b in bad:
        assert b in err.value.message
    assert "q_proj, up_proj, v_proj" in err.value.message  # the valid names, sorted


def test_module_names_from_config(tmp_path, tiny_model_dir):
    assert model_module_names(tiny_model_dir) == LLAMA
    (tmp_path / "config.json").write_text("not json")
    assert model_module_names(tmp_path) is None
    assert model_module_names(tmp_path / "missing") is None
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8,
                                                  "n_head": 2, "vocab_size": 16,
                                                  "architectures": ["GPT2LMHeadModel"]}))
    # not Llama-style: the layers of the model built on the meta device
    assert model_module_names(gpt2) == {"c_attn", "c_proj", "c_fc"}


def test_local_module_names(tmp_path, tiny_model_dir):
    assert local_module_names("brightrun/tiny-llama", tmp_path) == LLAMA  # not built: a Llama
    assert local_module_names(str(tiny_model_dir), tmp_path) == LLAMA
    assert local_module_names("nobody/not-cached-model", tmp_path) is None


def test_estimate_and_create_refuse_unknown_modules(db):
    from backend.accounts.users import ensure_local_user
    from backend.jobs import service as jobs
    from tests.pages.conftest import make_dataset

    me = ensure_local_user()
    ds = make_dataset(me, "d")
    bad = jobs.build_config("balanced", overrides=["target_modules=q_proj,c_attn"])
    with pytest.raises(InvalidInput, match="'c_attn' not found in base model"):
        jobs.estimate_for_dataset(me, ds.id, bad, "cpu-local", 1)
    with pytest.raises(InvalidInput, match="gate_proj"):
        jobs.create_job(me, ds.id, overrides=["target_modules=c_attn"], submit=False)
    ok = jobs.build_config("balanced", overrides=["target_modules=q_proj,down_proj"])
    assert jobs.estimate_for_dataset(me, ds.id, ok, "cpu-local", 1)["total_steps"] > 0
