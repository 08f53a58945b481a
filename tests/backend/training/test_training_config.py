"""TrainingConfig: bounds, conflicts, warnings, presets, --set overrides, field help and its doc."""
from __future__ import annotations

import typing

import pytest

from backend.core.config import reset_settings
from backend.core.errors import InvalidInput, NotFound
from backend.training.catalogs import from_preset
from backend.training.config import (
    DEFAULT_TARGET_MODULES,
    InvalidTrainingConfig,
    TrainingConfig,
    apply_overrides,
    field_help,
    field_table_markdown,
    parse_override,
)
from tests.fixtures.paths import REPO

DOC = REPO / "docs" / "training-config.md"
MODEL = "mistralai/Mistral-7B-v0.1"


def cfg(**kw) -> TrainingConfig:
    return TrainingConfig(**{"base_model": MODEL, **kw})


def test_defaults():
    c = cfg()
    assert c.target_modules == list(DEFAULT_TARGET_MODULES)
    assert (c.max_seq_length, c.validation_fraction, c.eval_every_steps) == (2048, 0.1, None)
    assert c.warnings() == []


@pytest.fixture
def default_model_env(tmp_path, monkeypatch):
    """Settings with BRIGHTRUN_DEFAULT_BASE_MODEL set (no database or model needed)."""
    monkeypatch.setenv("BRIGHTRUN_HOME", str(tmp_path))
    monkeypatch.setenv("BRIGHTRUN_DEFAULT_BASE_MODEL", "Qwen/Qwen2.5-0.5B")
    reset_settings()
    yield
    reset_settings()


def test_base_model_defaults_to_setting(default_model_env):
    assert TrainingConfig().base_model == "Qwen/Qwen2.5-0.5B"
    assert from_preset("balanced").base_model == "Qwen/Qwen2.5-0.5B"
    assert from_preset("balanced", base_model=MODEL).base_model == MODEL


@pytest.mark.parametrize("name", list(TrainingConfig.model_fields))
def test_every_field_has_help_and_bounds(name):
    info = TrainingConfig.model_fields[name]
    assert info.description and len(info.description) >= 30
    if info.annotation not in (bool, bool | None) \
            and typing.get_origin(info.annotation) is not typing.Literal:  # a switch/choice: none
        assert info.metadata, f"{name} has no bounds"


@pytest.mark.parametrize("field,value,fragment", [
    ("lora_dropout", 1.0, "lora_dropout"),
    ("lora_dropout", -0.1, "lora_dropout"),
    ("learning_rate", 0, "learning_rate"),
    ("learning_rate", 0.5, "learning_rate"),
    ("batch_size", 0, "batch_size"),
    ("num_epochs", 0, "num_epochs"),
    ("num_epochs", 2.5, "num_epochs"),
    ("lora_rank", 0, "lora_rank"),
    ("lora_alpha", 0, "lora_alpha"),
    ("target_modules", [], "target_modules"),
    ("target_modules", ["q_proj", "q_proj"], "duplicate module names: q_proj"),
    ("target_modules", ["q proj"], "module names must be"),
    ("warmup_steps", -1, "warmup_steps"),
    ("weight_decay", 2.0, "weight_decay"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps"),
    ("max_grad_norm", 0, "max_grad_norm"),
    ("max_seq_length", 16, "max_seq_length"),
    ("seed", -1, "seed"),
    ("eval_every_steps", 0, "eval_every_steps"),
    ("checkpoint_every_steps", 0, "checkpoint_every_steps"),
    ("validation_fraction", 0.6, "validation_fraction"),
    ("base_model", "", "base_model"),
    ("lora_rnk", 8, "did you mean lora_rank"),
])
def test_bad_values_raise_invalid_input(field, value, fragment):
    with pytest.raises(InvalidTrainingConfig) as info:
        cfg(**{field: value})
    assert isinstance(info.value, InvalidInput) and info.value.code == "invalid_input"
    assert fragment in info.value.message


@pytest.mark.parametrize("values,fragment", [
    ({"batch_size": 512, "gradient_accumulation_steps": 32}, "exceeds 8192"),
    ({"validation_fraction": 0.0, "eval_every_steps": 10}, "nothing to evaluate"),
])
def test_conflicts_raise(values, fragment):
    with pytest.raises(InvalidTrainingConfig, match=fragment):
        cfg(**values)


def test_every_problem_reported_at_once():
    with pytest.raises(InvalidTrainingConfig) as info:
        TrainingConfig.model_validate({"base_model": MODEL, "batch_size": 0, "lora_dropout": 2,
                                       "nope": 1})
    assert len(info.value.issues) == 3
    assert {i.split(":")[0] for i in info.value.issues} == {"batch_size", "lora_dropout", "nope"}


@pytest.mark.parametrize("values,kwargs,fragment", [
    ({"learning_rate": 3e-3}, {}, "above 0.002"),
    ({"learning_rate": 1e-7}, {}, "barely change"),
    ({"lora_alpha": 8, "lora_rank": 16}, {}, "alpha/rank < 1"),
    ({"lora_rank": 256, "lora_alpha": 512}, {}, "lora_rank 256 is above 128"),
    ({"num_epochs": 25}, {}, "likely to overfit"),
    ({"weight_decay": 0.5}, {}, "weight_decay 0.5"),
    ({"lora_dropout": 0.7}, {}, "lora_dropout 0.7"),
    ({"validation_fraction": 0.0}, {}, "no validation loss"),
    ({"max_seq_length": 4096}, {"model_max_length": 2048}, "above the model's context of 2048"),
    ({"warmup_steps": 100}, {"total_steps": 100}, "not below the 100 total"),
])
def test_warnings(values, kwargs, fragment):
    found = cfg(**values).warnings(**kwargs)
    assert any(fragment in w for w in found), found


@pytest.mark.parametrize("values,kwargs", [
    ({"learning_rate": 1e-3}, {}),
    ({"lora_alpha": 16, "lora_rank": 16}, {}),
    ({"max_seq_length": 2048}, {"model_max_length": 2048}),
    ({"warmup_steps": 99}, {"total_steps": 100}),
])
def test_no_warning_at_the_limits(values, kwargs):
    assert cfg(**values).warnings(**kwargs) == []


@pytest.mark.parametrize("examples,batch,accum,workers,per_epoch", [
    (100, 8, 1, 1, 13), (100, 8, 2, 1, 7), (100, 8, 1, 2, 7), (16, 8, 1, 1, 2), (0, 8, 1, 1, 1),
    (1, 8, 4, 4, 1),
])
def test_steps_per_epoch(examples, batch, accum, workers, per_epoch):
    c = cfg(batch_size=batch, gradient_accumulation_steps=accum, num_epochs=3)
    assert c.steps_per_epoch(examples, workers) == per_epoch
    assert c.total_steps(examples, workers) == 3 * per_epoch


@pytest.mark.parametrize("item,key,value", [
    ("learning_rate=1e-4", "learning_rate", 1e-4),
    ("batch_size=16", "batch_size", 16),
    (" seed = 7 ", "seed", 7),
    ("lora_dropout=0", "lora_dropout", 0.0),
    ("target_modules=q_proj,v_proj", "target_modules", ["q_proj", "v_proj"]),
    ('target_modules=["q_proj","up_proj"]', "target_modules", ["q_proj", "up_proj"]),
    ("eval_every_steps=none", "eval_every_steps", None),
    ("eval_every_steps=50", "eval_every_steps", 50),
    ("checkpoint_every_steps=null", "checkpoint_every_steps", None),
    ("base_model=Qwen/Qwen2.5-0.5B", "base_model", "Qwen/Qwen2.5-0.5B"),
    ("base_model=/models/a=b", "base_model", "/models/a=b"),
])
def test_parse_override(item, key, value):
    assert parse_override(item) == (key, value)


@pytest.mark.parametrize("item,fragment", [
    ("batch_size=abc", "batch_size='abc': not a valid int"),
    ("batch_size=1.5", "batch_size='1.5'"),
    ("learning_rate=fast", "not a valid float"),
    ("max_seq_length=none", "max_seq_length='none'"),
    ("lora_rnk=8", "did you mean lora_rank"),
    ("nonsense=1", "unknown field"),
    ("learning_rate", "expected KEY=VALUE"),
    ("lora_dropout=1", "lora_dropout"),
    ("eval_every_steps=0", "eval_every_steps"),
    ("target_modules=[bad", "target_modules='[bad': not a valid JSON list"),
    ('target_modules=["q_proj",', "not a valid JSON list"),
    ("target_modules=[1, 2]", "expected a list of names"),
    ('target_modules=[["q_proj"]]', "expected a list of names"),
])
def test_apply_overrides_errors(item, fragment):
    with pytest.raises(InvalidTrainingConfig) as info:
        apply_overrides(cfg(), [item])
    assert fragment in info.value.message


def test_apply_overrides_returns_new_config_and_reports_all_bad_items():
    base = cfg()
    new = apply_overrides(base, ["batch_size=4", "lora_rank=32", "target_modules=q_proj"])
    assert (new.batch_size, new.lora_rank, new.target_modules) == (4, 32, ["q_proj"])
    assert base.batch_size == 8
    with pytest.raises(InvalidTrainingConfig) as info:
        apply_overrides(base, ["batch_size=x", "nope=1", "seed=3"])
    assert len(info.value.issues) == 2


def test_from_preset_with_overrides():
    c = from_preset("aggressive", base_model=MODEL, num_epochs=2)
    assert (c.learning_rate, c.batch_size, c.lora_rank, c.num_epochs) == (1e-3, 8, 32, 2)
    with pytest.raises(InvalidTrainingConfig):
        from_preset("balanced", base_model=MODEL, lora_dropout=1.0)


def test_unknown_preset_lists_valid_ids():
    with pytest.raises(NotFound) as info:
        from_preset("turbo")
    for pid in ("conservative", "balanced", "aggressive", "custom"):
        assert pid in info.value.message


def test_field_help_rows_cover_every_field():
    rows = field_help()
    assert [r.name for r in rows] == list(TrainingConfig.model_fields)
    by_name = {r.name: r for r in rows}
    assert by_name["lora_dropout"].bounds == ">= 0, < 1"
    assert by_name["target_modules"].default == "q_proj,k_proj,v_proj,o_proj"
    assert by_name["eval_every_steps"].type == "int or none"


def test_doc_contains_generated_field_table():
    text = DOC.read_text(encoding="utf-8")
    for name in TrainingConfig.model_fields:
        assert f"`{name}`" in text, name
    assert field_table_markdown() in text, "regenerate with: python -m backend.training.config"


@pytest.mark.parametrize("steps,ratio,total,expected", [
    (0, None, 100, 0), (0, 0.1, 100, 10), (0, 0.1, 18, 2), (0, 0.1, 4, 1), (0, 0.5, 2, 1),
    (0, 0.1, 1, 0), (0, 0.0, 50, 0), (7, 0.1, 100, 7), (200, 0.1, 18, 200),
])
def test_warmup_for_a_run(steps, ratio, total, expected):
    config = TrainingConfig(base_model="x", warmup_steps=steps, warmup_ratio=ratio)
    assert config.warmup_for(total) == expected
    # only explicit steps can reach the run's length, and only they warn
    assert bool(config.warnings(total_steps=total)) == (steps >= total)
