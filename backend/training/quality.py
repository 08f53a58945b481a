"""Model quality from the loss history (pure): perplexity and a convergence rating.

Rating (documented in docs/training.md):
- reduction = (first training loss − final validation loss) / first training loss
- gap = (final validation loss − final training loss) / final training loss  (overfitting signal)
- excellent: reduction ≥ 0.5 and gap ≤ 0.10
- good:      reduction ≥ 0.3 and gap ≤ 0.25
- fair:      reduction ≥ 0.1 and gap ≤ 0.50
- poor:      anything else (little learning, or validation far above training)
- not rated: no validation data (nothing held out, so there is no validation loss and no gap to
  judge): the rating is ``NOT_RATED`` and the reason is said in words (:func:`rating_text`)
"""
from __future__ import annotations

import math

NOT_RATED = "not rated"
RATINGS = ("excellent", "good", "fair", "poor", NOT_RATED)
NO_VALIDATION_REASON = "not rated: no validation data"


def convergence_rating(first_train_loss: float | None, final_train_loss: float | None,
                       final_val_loss: float | None) -> str:
    """Rate convergence; ``not rated`` without a validation loss (nothing was held out); other
    missing inputs rate ``poor``."""
    if final_val_loss is None:
        return NOT_RATED
    if not first_train_loss or final_train_loss is None:
        return "poor"
    if not all(math.isfinite(x) for x in (first_train_loss, final_train_loss, final_val_loss)):
        return "poor"
    reduction = (first_train_loss - final_val_loss) / first_train_loss
    gap = (final_val_loss - final_train_loss) / max(final_train_loss, 1e-9)
    if reduction >= 0.5 and gap <= 0.10:
        return "excellent"
    if reduction >= 0.3 and gap <= 0.25:
        return "good"
    if reduction >= 0.1 and gap <= 0.50:
        return "fair"
    return "poor"


def rating_text(rating: str | None) -> str:
    """The rating in words: 'not rated: no validation data' for an unrated model."""
    if rating == NOT_RATED or rating is None:
        return NO_VALIDATION_REASON
    return f"{rating} convergence"


def perplexity(loss: float | None) -> float | None:
    """exp(loss), capped to stay finite."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 50.0))


def quality_metrics(first_train_loss: float | None, final_train_loss: float | None,
                    final_val_loss: float | None, best_val_loss: float | None,
                    best_epoch: int | None) -> dict:
    """The quality_metrics JSON of a model artifact."""
    return {
        "final_training_loss": final_train_loss,
        "final_validation_loss": final_val_loss,
        "best_validation_loss": best_val_loss,
        "best_epoch": best_epoch,
        "perplexity": perplexity(final_val_loss),
        "first_training_loss": first_train_loss,
        "convergence_quality": convergence_rating(first_train_loss, final_train_loss,
                                                  final_val_loss),
    }
