import math

import pytest

from backend.training.quality import convergence_rating, perplexity, quality_metrics


@pytest.mark.parametrize("first,train,val,expected", [
    (4.0, 1.5, 1.6, "excellent"),   # 60 % reduction, small gap
    (4.0, 2.2, 2.6, "good"),        # 35 %, gap 18 %
    (4.0, 2.5, 3.4, "fair"),        # 15 %, gap 36 %
    (4.0, 3.9, 3.95, "poor"),       # ~1 % reduction
    (4.0, 1.6, 2.3, "fair"),        # 42 % reduction but gap 44 % -> not good
    (4.0, 0.5, 1.9, "poor"),        # gap 280 %: overfit despite the reduction
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
