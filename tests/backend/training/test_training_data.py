"""Tokenisation and batching of training data (backend/training/data.py)."""
from __future__ import annotations

import io
import json
import random

import pytest

from backend.base_models.tiny_model import ensure_tiny_model
from backend.core.errors import InvalidInput
from backend.datasets.formats import iter_conversations, load_split
from backend.training.data import (
    FALLBACK_CHAT_TEMPLATE,
    GROUP_BATCHES,
    IGNORE_INDEX,
    Encoded,
    collate,
    encode_all,
    encode_conversation,
    ensure_chat_template,
    make_batches,
    padding_efficiency,
    shard_batches,
)
from backend.training.plan import held_out_indices
from tests.fixtures.paths import SAMPLE_DATA

SAMPLE_V4 = str(SAMPLE_DATA / "sample-v4.jsonl")

# One conversation per supported format, all multi-turn where the format allows it.
FORMAT_LINES = {
    "brightrun_lora_v4": {"conversation_id": "v4-1", "turns": [
        {"role": "system", "content": "You are Elena, a calm financial planner."},
        {"role": "user", "content": "Should I pay off my card or invest?"},
        {"role": "assistant", "content": "Pay off the card first: its interest is high."},
        {"role": "user", "content": "Even at 6.8%?"},
        {"role": "assistant", "content": "  Yes, that is a guaranteed return.  "}]},
    "brightrun_lora_v3": {"conversation_id": "v3-1", "system_prompt": "You are a coach.",
                          "training_pairs": [{"input": "How do I start running?",
                                              "output": "Begin with short runs."},
                                             {"input": "How often?",
                                              "output": "Three times a week."}]},
    "openai_chat": {"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Capital of France?"},
                                 {"role": "assistant", "content": "Paris."}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Tell me a fun fact."},
                                   {"from": "gpt", "value": "Octopuses have three hearts."},
                                   {"from": "human", "value": "Another?"},
                                   {"from": "gpt", "value": "Honey never spoils.\nReally!"}]},
    "alpaca": {"instruction": "Translate to German.", "input": "The train leaves at nine.",
               "output": "Der Zug fährt um neun Uhr ab."},
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_tiny_model(tmp_path_factory.mktemp("home")))


def _conversation(fmt: str):
    raw = (json.dumps(FORMAT_LINES[fmt]) + "\n").encode()
    [(line_no, conv)] = list(iter_conversations(io.BytesIO(raw)))
    return conv


@pytest.mark.parametrize("fmt", sorted(FORMAT_LINES))
def test_encoding_is_the_chat_template_token_for_token(tokenizer, fmt):
    conv = _conversation(fmt)
    enc = encode_conversation(tokenizer, conv.turns, max_seq_length=2048)
    ref = tokenizer.apply_chat_template(conv.turns, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    assert enc.input_ids == list(ref["input_ids"])
    assert enc.labels == [t if m else IGNORE_INDEX
                          for t, m in zip(ref["input_ids"], ref["assistant_masks"])]
    assert not enc.truncated
    # what is trained is exactly each assistant reply (as the template trims it) + <|eot_id|>
    trained = tokenizer.decode([t for t in enc.labels if t != IGNORE_INDEX])
    replies = [t["content"].strip() for t in conv.turns if t["role"] == "assistant"]
    assert trained == "".join(r + "<|eot_id|>" for r in replies)
    assert enc.trained_tokens == sum(1 for t in enc.labels if t != IGNORE_INDEX)


def test_truncation_keeps_whole_turns_up_to_the_last_assistant_turn_that_fits(tokenizer):
    conv = _conversation("brightrun_lora_v4")
    full = encode_conversation(tokenizer, conv.turns, 2048)
    ends = [i + 1 for i in range(len(full)) if full.labels[i] != IGNORE_INDEX
            and (i + 1 == len(full) or full.labels[i + 1] == IGNORE_INDEX)]
    assert len(ends) == 2  # two assistant turns
    cut = encode_conversation(tokenizer, conv.turns, len(full) - 3)
    assert cut.truncated and len(cut) == ends[0]  # the second reply would be cut inside: dropped
    assert cut.input_ids == full.input_ids[:ends[0]] and cut.labels == full.labels[:ends[0]]
    assert tokenizer.decode(cut.input_ids[-1:]) == "<|eot_id|>"  # the turn's end token is kept
    assert (cut.full_length, cut.full_trained) == (len(full), full.trained_tokens)
    # exactly at the first turn's end: same; one token short: nothing to train → left out
    assert encode_conversation(tokenizer, conv.turns, ends[0]).input_ids == cut.input_ids
    assert encode_conversation(tokenizer, conv.turns, ends[0] - 1).trained_tokens == 0
    encoded, counts = encode_all(tokenizer, [conv, conv.turns], ends[0] - 1)
    assert encoded == [] and counts["dropped"] == 2 and counts["truncated"] == 0
    encoded, counts = encode_all(tokenizer, [conv], len(full) - 3)
    assert counts == {"conversations": 1, "truncated": 1, "dropped": 0,
                      "tokens": ends[0], "trained_tokens": cut.trained_tokens}


def test_conversation_without_assistant_turn_is_refused(tokenizer):
    with pytest.raises(InvalidInput) as err:
        encode_conversation(tokenizer, [{"role": "user", "content": "hello"}], 128)
    assert err.value.code == "no_assistant_tokens"


def test_template_without_generation_tags_gives_the_same_labels(tokenizer):
    """Models whose template has no {% generation %} block: spans found by prefix rendering."""
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = (tokenizer.chat_template.replace("{%- generation %}", "")
                           .replace("{%- endgeneration %}", ""))
    assert ensure_chat_template(plain) == "prefix"
    assert ensure_chat_template(tokenizer) == "generation"
    for fmt in FORMAT_LINES:
        turns = _conversation(fmt).turns
        assert encode_conversation(plain, turns, 2048) == \
            encode_conversation(tokenizer, turns, 2048)


def test_model_without_template_gets_the_fallback_template(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    assert ensure_chat_template(bare) == "fallback"
    assert bare.chat_template == FALLBACK_CHAT_TEMPLATE
    enc = encode_conversation(bare, _conversation("openai_chat").turns, 2048)
    assert bare.decode([t for t in enc.labels if t != IGNORE_INDEX]) == "Paris.<|eot_id|>"


# ----- batching ----------------------------------------------------------------------------------
def _lengths(n: int = 600, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(5, 0.8)) + 8 for _ in range(n)]


def test_make_batches_is_deterministic_and_covers_every_row_once():
    lengths = _lengths()
    a = make_batches(lengths, 8, seed=5, epoch=0)
    assert a == make_batches(lengths, 8, seed=5, epoch=0)
    assert a != make_batches(lengths, 8, seed=5, epoch=1)
    assert a != make_batches(lengths, 8, seed=6, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 8 for b in a)
    assert sum(len(b) < 8 for b in a) <= -(-len(lengths) // (8 * GROUP_BATCHES))  # ≤ 1 per window
    with pytest.raises(InvalidInput):
        make_batches(lengths, 0, 0, 0)


def test_length_grouping_wastes_far_less_padding_than_random_batches():
    lengths = _lengths()
    grouped = padding_efficiency(lengths, make_batches(lengths, 8, seed=0, epoch=0))
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    naive = padding_efficiency(lengths, [order[i:i + 8] for i in range(0, len(order), 8)])
    assert naive < 0.5 and grouped > 0.8 and grouped > 2 * naive
    assert padding_efficiency([5, 5], [[0, 1]]) == 1.0


def test_shard_batches_gives_every_worker_the_same_number_of_disjoint_batches():
    batches = [[i] for i in range(7)]
    shards = [shard_batches(batches, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    real = [b[0] for s in shards for b, is_real in s if is_real]
    assert sorted(real) == list(range(7))
    assert sum(not is_real for s in shards for _, is_real in s) == 2
    assert shard_batches([], 0, 2) == []
    with pytest.raises(InvalidInput):
        shard_batches(batches, 3, 3)


def test_collate_right_pads_with_ignored_labels():
    a = Encoded([1, 2, 3, 4], [-100, -100, 3, 4], False)
    b = Encoded([1, 5], [-100, 5], False)
    batch = collate([a, b], pad_id=9)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [1, 5, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4], [-100, 5, -100, -100]]
    with pytest.raises(InvalidInput):
        collate([], 0)


def test_padding_does_not_change_the_loss(tokenizer):
    """Dynamic padding is only correct if a padded row scores like the same row alone."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tokenizer.name_or_path).eval()
    encoded = [encode_conversation(tokenizer, _conversation(f).turns, 2048) for f in FORMAT_LINES]
    batch = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for row, enc in enumerate(encoded):
            alone = model(input_ids=torch.tensor([enc.input_ids])).logits[0]
            assert torch.allclose(logits[row, :len(enc)], alone, atol=1e-4)


# ----- split -------------------------------------------------------------------------------------
def test_load_split_is_the_plans_exact_split_from_path_url_and_file():
    train, val = load_split(SAMPLE_V4, 0.3, 0)
    ids = [c.conversation_id for c in train + val]
    assert len(ids) == len(set(ids)) == 5
    all_ids = [c.conversation_id for _, c in iter_conversations(open(SAMPLE_V4, "rb"))]
    held = held_out_indices(all_ids, 0.3, 0)
    assert len(val) == 2 == round(0.3 * 5)
    assert {c.conversation_id for c in val} == {all_ids[i] for i in held}
    for source in (f"file://{SAMPLE_V4}", open(SAMPLE_V4, "rb")):
        t2, v2 = load_split(source, 0.3, 0)
        assert [c.conversation_id for c in t2] == [c.conversation_id for c in train]
        assert [c.conversation_id for c in v2] == [c.conversation_id for c in val]
    assert load_split(SAMPLE_V4, 0.0, 0)[1] == []
    with pytest.raises(InvalidInput):
        load_split("s3://bucket/data.jsonl")
    with pytest.raises(FileNotFoundError):
        load_split("/nonexistent/data.jsonl")
