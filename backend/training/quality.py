"""Model quality from the loss history (pure): perplexity, loss reduction and a convergence rating.

Rating (documented in docs/training.md, "Quality rating"):
- reference = the **base model's validation loss** (measured before the first step, the loss
  chart's step 0); runs that did not record it (older runs) fall back to the first training loss
- reduction = (reference − final validation loss) / reference
- gap = (final validation loss − final training loss) / reference  (overfitting signal, as a share
  of where the run started: a training loss near zero — the facts memorised — does not by itself
  make a run "poor" when its validation loss fell a lot too)
- excellent: reduction ≥ 0.25 and gap ≤ 0.10
- good:      reduction ≥ 0.10 and gap ≤ 0.25
- fair:      reduction ≥ 0.03 and gap ≤ 0.50
- poor:      anything else (little learning, or validation far above training)
- answers (where the run scored its held-out answers against the references, ``answers`` =
  ``backend.jobs.samples.scores``): a rating above "fair" also needs the adapter's answers to be
  closer to the references than the base model's — mean ROUGE-L above the base's and, where the
  conversations name a key fact, at least as many key facts stated; otherwise it is capped at
  "fair" (the loss fell, but the answers did not improve)
- not rated: no validation data (nothing held out, so there is no validation loss and no gap to
  judge): the rating is ``NOT_RATED`` and the reason is said in words (:func:`rating_text`)

The thresholds are for fine-tuning a pretrained model: an adapter that takes 10 % off a real
instruct model's held-out loss on its own task has learned it visibly.
"""
from __future__ import annotations

import math

NOT_RATED = "not rated"
RATINGS = ("excellent", "good", "fair", "poor", NOT_RATED)
NO_VALIDATION_REASON = "not rated: no validation data"
THRESHOLDS = (("excellent", 0.25, 0.10), ("good", 0.10, 0.25), ("fair", 0.03, 0.50))


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def loss_reduction(reference_loss: float | None, final_val_loss: float | None) -> float | None:
    """(reference − final validation loss) / reference, or None when either is missing."""
    if not _finite(reference_loss, final_val_loss) or not reference_loss:
        return None
    return (reference_loss - final_val_loss) / reference_loss


def convergence_rating(reference_loss: float | None, final_train_loss: float | None,
                       final_val_loss: float | None) -> str:
    """Rate convergence against ``reference_loss`` (the base model's validation loss, or the
    first training loss for runs without it); ``not rated`` without a validation loss (nothing
    was held out); other missing inputs rate ``poor``."""
    if final_val_loss is None:
        return NOT_RATED
    reduction = loss_reduction(reference_loss, final_val_loss)
    if reduction is None or not _finite(final_train_loss):
        return "poor"
    gap = (final_val_loss - final_train_loss) / reference_loss
    for rating, min_reduction, max_gap in THRESHOLDS:
        if reduction >= min_reduction and gap <= max_gap:
            return rating
    return "poor"


def answers_improved(answers: dict | None) -> bool | None:
    """Whether the adapter's answers beat the base model's (module docstring, "answers"); None
    when the run scored no answers of both."""
    if not answers or not answers.get("compared"):
        return None
    b, a = answers.get("base") or {}, answers.get("adapter") or {}
    if b.get("rouge_l") is None or a.get("rouge_l") is None:
        return None
    facts_ok = not a.get("facts_total") or not b.get("facts_total") \
        or a.get("facts", 0) >= b.get("facts", 0)
    return a["rouge_l"] > b["rouge_l"] and facts_ok


def answer_summary(answers: dict | None) -> dict | None:
    """The answer scores kept in quality_metrics (``answers`` = ``backend.jobs.samples.scores``)."""
    if not answers or not answers.get("compared"):
        return None
    b, a = answers.get("base") or {}, answers.get("adapter") or {}
    return {"base_rouge_l": b.get("rouge_l"), "adapter_rouge_l": a.get("rouge_l"),
            "base_exact_match": b.get("exact_match"), "adapter_exact_match": a.get("exact_match"),
            "compared": answers["compared"], "closer": answers.get("closer"),
            "base_facts": b.get("facts"), "adapter_facts": a.get("facts"),
            "facts_total": a.get("facts_total") or None}


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
                    best_epoch: int | None, base_val_loss: float | None = None,
                    answers: dict | None = None) -> dict:
    """The quality_metrics JSON of a model artifact. ``base_val_loss``: the base model's
    validation loss (step 0); when missing the reference is the first training loss.
    ``answers``: the held-out answers' scores (``backend.jobs.samples.scores``), which can cap
    the rating (module docstring)."""
    reference = base_val_loss if _finite(base_val_loss) else first_train_loss
    rating = convergence_rating(reference, final_train_loss, final_val_loss)
    improved = answers_improved(answers)
    if improved is False and rating in ("excellent", "good"):
        rating = "fair"
    return {
        "final_training_loss": final_train_loss,
        "final_validation_loss": final_val_loss,
        "best_validation_loss": best_val_loss,
        "best_epoch": best_epoch,
        "perplexity": perplexity(final_val_loss),
        "first_training_loss": first_train_loss,
        "base_validation_loss": base_val_loss,
        "base_perplexity": perplexity(base_val_loss),
        "reduction_reference": "base_validation_loss" if _finite(base_val_loss)
        else "first_training_loss",
        "loss_reduction": loss_reduction(reference, final_val_loss),
        "convergence_quality": rating,
        "answers": answer_summary(answers),
        "answers_improved": improved,
    }
