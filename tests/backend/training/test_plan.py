"""The trainer's plan (backend/training/plan.py): exact split, steps as the trainer cuts them,
turn-aware truncation counts that equal what is trained (issue 14, acceptance 2 and 3)."""
from __future__ import annotations

import io
import json
import random

import pytest

from backend.base_models.tiny_model import ensure_tiny_model
from backend.core.errors import InvalidInput
from backend.datasets.formats import load_split
from backend.training.config import TrainingConfig
from backend.training.data import (
    IGNORE_INDEX,
    encode_and_plan,
    encode_conversation,
    make_batches,
    shard_batches,
)
from backend.training.plan import (
    ConversationTokens,
    batches_per_epoch,
    event_steps,
    held_out_count,
    held_out_indices,
    plan_for_config,
    plan_run,
    steps_per_epoch,
)
from backend.training.quality import quality_metrics, rating_text


# ----- split (acceptance 2) ----------------------------------------------------------------------
@pytest.mark.parametrize("n,fraction,held", [
    (40, 0.1, 4), (5, 0.1, 1), (1, 0.1, 0), (2, 0.1, 1), (15, 0.1, 2), (25, 0.1, 3),
    (45, 0.1, 5), (40, 0.0, 0), (40, 0.5, 20), (3, 0.5, 2), (2, 0.5, 1), (60, 0.3, 18),
    (2, 1.0, 1), (0, 0.1, 0),
])
def test_held_out_count_is_round_fraction_times_n(n, fraction, held):
    assert held_out_count(n, fraction) == held
    ids = [f"conv-{i}" for i in range(n)]
    assert len(held_out_indices(ids, fraction, 0)) == held


def test_split_is_deterministic_by_seed_and_independent_of_order():
    ids = [f"c{i}" for i in range(40)]
    a, b = held_out_indices(ids, 0.1, 0), held_out_indices(ids, 0.1, 0)
    assert a == b and len(a) == 4
    assert held_out_indices(ids, 0.1, 1) != a  # another seed picks others
    reversed_ids = ids[::-1]
    held = {reversed_ids[i] for i in held_out_indices(reversed_ids, 0.1, 0)}
    assert held == {ids[i] for i in a}  # the same conversations whatever the file order


def test_load_split_of_40_5_and_1_and_one_conversation_is_not_rated():
    def data(n):
        return io.BytesIO("".join(json.dumps({"conversation_id": f"c{i}", "turns": [
            {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n"
            for i in range(n)).encode())

    for n, held in ((40, 4), (5, 1), (1, 0)):
        train, val = load_split(data(n), 0.1, 0)
        assert (len(train), len(val)) == (n - held, held)
    q = quality_metrics(3.0, 1.0, None, None, None)  # the run of 1: no validation loss
    assert q["convergence_quality"] == "not rated"
    assert rating_text(q["convergence_quality"]) == "not rated: no validation data"


def test_bad_fraction_is_refused():
    with pytest.raises(InvalidInput):
        held_out_count(10, 1.5)


# ----- steps: the trainer's own batching ---------------------------------------------------------
@pytest.mark.parametrize("n,batch,workers,accum", [
    (36, 4, 1, 1), (36, 4, 2, 1), (9, 2, 1, 2), (9, 2, 2, 2), (1, 8, 4, 4), (1000, 8, 3, 2),
    (401, 8, 1, 1), (799, 16, 2, 3), (5, 16, 1, 1), (72, 8, 2, 1),
])
def test_steps_per_epoch_equal_the_trainers_batches(n, batch, workers, accum):
    lengths = [random.Random(i).randint(5, 300) for i in range(n)]
    batches = make_batches(lengths, batch, seed=3, epoch=0)
    assert len(batches) == batches_per_epoch(n, batch)
    for rank in range(workers):
        mine = shard_batches(batches, rank, workers)
        steps = [mine[i:i + accum] for i in range(0, len(mine), accum)]
        assert len(steps) == steps_per_epoch(n, batch, workers, accum)


def test_event_steps_are_the_trainers_evaluations_and_checkpoints():
    # 3 epochs of 5 steps; eval every 4 steps + each epoch's end
    assert event_steps(15, 5, 4, at_epoch_ends=True) == [4, 5, 8, 10, 12, 15]
    assert event_steps(15, 5, None, at_epoch_ends=False) == [5, 10, 15]
    assert event_steps(15, 5, 4, at_epoch_ends=False) == [4, 8, 12]  # + the last step (caller)


def test_plan_counts_split_truncation_and_tokens():
    convs = [ConversationTokens(100, 40, 100, 40), ConversationTokens(50, 20, 80, 35),
             ConversationTokens(0, 0, 90, 30), ConversationTokens(60, 30, 60, 30)]
    plan = plan_run(convs, frozenset({3}), batch_size=1, gradient_accumulation_steps=1,
                    num_epochs=2, workers=1)
    assert (plan.train_conversations, plan.validation_conversations) == (2, 1)
    assert (plan.truncated, plan.left_out, plan.trained_tokens_cut) == (1, 1, 45)
    assert plan.tokens_to_train == 300 and plan.trained_tokens_to_train == 120
    assert plan.total_steps == 4 and plan.evaluations == 2 and plan.eval_tokens == 120
    with pytest.raises(InvalidInput) as err:
        plan_run(convs[2:3], frozenset(), batch_size=1, gradient_accumulation_steps=1,
                 num_epochs=1)
    assert err.value.code == "empty_dataset"


# ----- truncation on held-out-style multi-turn data (acceptance 3) -------------------------------
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_tiny_model(tmp_path_factory.mktemp("home")))


def held_out_style(n: int = 60) -> list[list[dict]]:
    """Multi-turn support conversations of varied lengths, like the held-out evaluation set."""
    rng = random.Random(14)
    out = []
    for i in range(n):
        turns = [{"role": "system", "content": "You are a careful bank support agent."}] \
            if i % 2 else []
        for t in range(rng.randint(1, 4)):
            turns.append({"role": "user", "content": " ".join(
                rng.choice(["card", "blocked", "why", "transfer", "my", "limit", "please"])
                for _ in range(rng.randint(1, 12)))})
            turns.append({"role": "assistant", "content": " ".join(
                rng.choice(["your", "card", "is", "safe", "we", "unblocked", "it", "today"])
                for _ in range(rng.randint(1, 20)))})
        out.append(turns)
    return out


def _assistant_ends(labels: list[int]) -> set[int]:
    return {i + 1 for i in range(len(labels)) if labels[i] != IGNORE_INDEX
            and (i + 1 == len(labels) or labels[i + 1] == IGNORE_INDEX)}


@pytest.mark.parametrize("max_seq_length", [64, 32])
def test_truncation_never_cuts_inside_an_assistant_turn_and_counts_what_is_trained(
        tokenizer, max_seq_length):
    from backend.datasets.templated import count_stream, token_statistics

    convs = held_out_style()
    cut = left = 0
    for turns in convs:
        full = encode_conversation(tokenizer, turns, 100_000)
        enc = encode_conversation(tokenizer, turns, max_seq_length)
        assert len(enc) <= max_seq_length
        if enc.trained_tokens == 0:
            left += 1
            assert min(_assistant_ends(full.labels)) > max_seq_length  # truly nothing fits
            continue
        assert enc.input_ids == full.input_ids[:len(enc)] and enc.labels == full.labels[:len(enc)]
        assert len(enc) in _assistant_ends(full.labels) or not enc.truncated  # whole turns only
        assert tokenizer.convert_ids_to_tokens(enc.input_ids[-1]) == "<|eot_id|>"
        cut += int(enc.truncated)
    assert cut > 0 and left > 0  # both cases occur in this data

    # what the trainer trains (encode_and_plan, as ray_jobs/lora_worker does) …
    ids = [f"h{i}" for i in range(len(convs))]
    config = TrainingConfig(max_seq_length=max_seq_length, batch_size=4, num_epochs=1,
                            validation_fraction=0.1, warmup_steps=0)
    held = held_out_indices(ids, 0.1, 0)
    train, val, plan = encode_and_plan(
        tokenizer, [c for i, c in enumerate(convs) if i not in held],
        [c for i, c in enumerate(convs) if i in held], config)
    assert (plan.truncated, plan.left_out) == (cut, left)
    assert plan.trained_tokens_to_train == sum(e.trained_tokens for e in train)
    assert plan.tokens_to_train == sum(len(e) for e in train)
    # … equals what the validation report and the estimate say
    stream = io.BytesIO("".join(json.dumps({"conversation_id": cid, "turns": t}) + "\n"
                                for cid, t in zip(ids, convs)).encode())
    counted = count_stream(stream, tokenizer, max_seq_length, "tiny")
    report = token_statistics(counted)["truncation"]
    assert (report["truncated"], report["left_out"]) == (cut, left)
    assert report["trained_tokens_cut"] == plan.trained_tokens_cut
    estimate_plan = plan_for_config(counted.conversations, counted.ids, config)
    assert estimate_plan == plan
