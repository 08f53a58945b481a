import math

import pytest

from backend.training.quality import convergence_rating, perplexity, quality_metrics


@pytest.mark.parametrize("first,train,val,expected", [
    (4.0, 1.5, 1.6, "excellent"),   # 60 % reduction, small gap
    (4.0, 2.2, 2.8, "good"),        # 30 %, gap 15 % of the reference
    (4.0, 2.0, 3.4, "fair"),        # 15 %, gap 35 %
    (4.0, 3.9, 3.95, "poor"),       # ~1 % reduction
    (4.0, 1.0, 2.3, "fair"),        # 42 % reduction but gap 32 % -> not good
    (4.0, 0.2, 2.5, "poor"),        # gap 58 %: overfit despite the reduction
    (3.452, 0.063, 0.442, "good"),  # the demo: facts memorised, validation −87 %, gap 11 %
    (None, 1.0, 1.0, "poor"),
    (4.0, 1.0, float("nan"), "poor"),
    (4.0, 1.0, None, "not rated"),  # nothing held out: no validation loss, no rating
])
def test_rating_table(first, train, val, expected):
    assert convergence_rating(first, train, val) == expected


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(None) is None
    assert math.isfinite(perplexity(1e6))


def test_quality_metrics_shape():
    q = quality_metrics(4.0, 1.5, 1.6, 1.55, 2)
    assert q["convergence_quality"] == "excellent" and q["best_epoch"] == 2
    assert q["perplexity"] == pytest.approx(math.exp(1.6))


def test_no_validation_data_is_said_plainly():
    from backend.training.quality import rating_text

    q = quality_metrics(4.0, 1.5, None, None, None)
    assert q["convergence_quality"] == "not rated" and q["perplexity"] is None
    assert rating_text(q["convergence_quality"]) == "not rated: no validation data"
    assert rating_text("good") == "good convergence"


@pytest.mark.parametrize("base,train,val,expected", [
    (3.42, 2.70, 2.96, "good"),       # −13.5 % of the base model's loss, gap 10 %
    (3.42, 2.90, 3.14, "fair"),       # −8 %
    (3.42, 3.40, 3.41, "poor"),       # −0.3 %: nothing learnt
    (3.42, 1.20, 2.40, "fair"),       # −30 % but gap 35 % of the base loss
    (8.30, 7.60, 7.70, "fair"),       # the tiny random model: −7 % of chance level
])
def test_rating_against_the_base_models_validation_loss(base, train, val, expected):
    q = quality_metrics(9.9, train, val, val, 2, base_val_loss=base)
    assert q["convergence_quality"] == expected
    assert q["loss_reduction"] == pytest.approx((base - val) / base)
    assert q["reduction_reference"] == "base_validation_loss"
    assert q["base_perplexity"] == pytest.approx(math.exp(base))


def test_without_a_base_loss_the_reference_is_the_first_training_loss():
    q = quality_metrics(4.0, 1.5, 1.6, 1.55, 2)
    assert q["reduction_reference"] == "first_training_loss"
    assert q["loss_reduction"] == pytest.approx(0.6) and q["base_validation_loss"] is None
    assert quality_metrics(4.0, 1.5, None, None, None)["loss_reduction"] is None


def test_answers_cap_the_rating_when_they_did_not_improve():
    from backend.training.quality import answers_improved, quality_metrics

    better = {"base": {"rouge_l": 0.2, "facts": 1, "facts_total": 12},
              "adapter": {"rouge_l": 0.6, "facts": 7, "facts_total": 12}, "compared": 12,
              "closer": 10}
    worse = {"base": {"rouge_l": 0.3}, "adapter": {"rouge_l": 0.25}, "compared": 12, "closer": 3}
    fewer_facts = {"base": {"rouge_l": 0.2, "facts": 5, "facts_total": 12},
                   "adapter": {"rouge_l": 0.5, "facts": 4, "facts_total": 12}, "compared": 12}
    assert answers_improved(better) is True and answers_improved(worse) is False
    assert answers_improved(fewer_facts) is False and answers_improved(None) is None
    assert answers_improved({"compared": 0}) is None
    args = (3.0, 1.9, 2.0, 2.0, 2)  # reduction 33 %, gap 5 %: excellent by loss
    assert quality_metrics(*args, base_val_loss=3.0)["convergence_quality"] == "excellent"
    q = quality_metrics(*args, base_val_loss=3.0, answers=better)
    assert q["convergence_quality"] == "excellent" and q["answers"]["adapter_facts"] == 7
    q = quality_metrics(*args, base_val_loss=3.0, answers=worse)
    assert q["convergence_quality"] == "fair" and q["answers_improved"] is False
    assert quality_metrics(*args, base_val_loss=3.0)["answers"] is None
