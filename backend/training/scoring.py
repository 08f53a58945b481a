"""Answers scored against references (pure, no I/O): ROUGE-L F-measure (``rouge-score``'s
``RougeScorer(["rougeL"], use_stemmer=True)``: longest common subsequence of the lower-cased,
stemmed word tokens) and SQuAD-style exact match (lower-cased, punctuation and the articles
a/an/the removed, whitespace collapsed, then equal).

One definition for every figure shown: the samples service (``backend/jobs/samples.py``), the CLI
and the pages all score through these functions.
"""
from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str | None, reference: str | None) -> float:
    """ROUGE-L F-measure of ``prediction`` against ``reference`` in [0, 1]; 0.0 when either is
    empty (or has no word tokens). Raises nothing."""
    prediction, reference = prediction or "", reference or ""
    if not prediction.strip() or not reference.strip():
        return 0.0
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def normalize(text: str | None) -> str:
    """SQuAD normalisation: lower case, punctuation removed, articles removed, whitespace
    collapsed."""
    text = (text or "").lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str | None, reference: str | None) -> bool:
    """Whether the normalised prediction equals the normalised reference (an empty reference
    matches nothing)."""
    ref = normalize(reference)
    return bool(ref) and normalize(prediction) == ref


def score_answer(prediction: str | None, reference: str | None) -> dict:
    """``{"rouge_l": float, "exact_match": bool}`` of one answer."""
    return {"rouge_l": rouge_l(prediction, reference),
            "exact_match": exact_match(prediction, reference)}


def score_answers(pairs: Iterable[tuple[str | None, str | None]]) -> dict:
    """Mean scores of ``(prediction, reference)`` pairs: ``{"rouge_l": mean ROUGE-L,
    "exact_match": share of exact matches, "count": n}``; means are None when there are none.
    A pair whose prediction is None (not answered) is skipped."""
    scored = [score_answer(p, r) for p, r in pairs if p is not None]
    n = len(scored)
    if not n:
        return {"rouge_l": None, "exact_match": None, "count": 0}
    return {"rouge_l": sum(x["rouge_l"] for x in scored) / n,
            "exact_match": sum(x["exact_match"] for x in scored) / n, "count": n}


def key_facts(metadata: dict | None) -> list[str]:
    """The key facts a reference answer must carry, from a conversation's ``metadata.key_fact``
    (a string, or a list of strings); empty when it has none (or it is not text)."""
    value = (metadata or {}).get("key_fact")
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if isinstance(v, (str, int, float)) and str(v).strip()]


def contains_fact(prediction: str | None, key_fact: str | list[str] | None) -> bool | None:
    """Whether the answer states the key fact(s): every fact's normalised words (:func:`normalize`)
    appear as a whole-word run in the normalised answer ("$75" is found in "over 75 dollars"
    only as "75"). None when there is no key fact to look for."""
    facts = key_fact if isinstance(key_fact, list) else [key_fact] if key_fact else []
    facts = [normalize(f) for f in facts if normalize(f)]
    if not facts:
        return None
    answer = f" {normalize(prediction)} "
    return all(f" {fact} " in answer for fact in facts)
