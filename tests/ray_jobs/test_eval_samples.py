"""Evaluation samples: which validation prompts, how they are rendered, greedy generation with the
adapter on and off (ray_jobs/worker/samples.py)."""
from __future__ import annotations

import pytest

from ray_jobs.worker.samples import (
    MAX_NEW_TOKENS,
    SamplePrompt,
    choose_prompts,
    generate,
    render,
    sink_items,
    within_budget,
)

S, U, A = "system", "user", "assistant"


def _conv(*roles_and_texts):
    return [{"role": r, "content": t} for r, t in roles_and_texts]


class _Conv:
    def __init__(self, turns):
        self.turns = turns


@pytest.mark.parametrize("conversations,count,expected", [
    # single turn: prompt = the user turn, reference = the answer
    ([_conv((U, "q1"), (A, "a1"))], 3, [(["user"], "q1", "a1")]),
    # multi-turn: up to the LAST assistant turn; the question is the user turn before it
    ([_conv((S, "be nice"), (U, "q1"), (A, "a1"), (U, "q2"), (A, "a2"))], 3,
     [(["system", "user", "assistant", "user"], "q2", "a2")]),
    # trailing user turn after the last answer is not part of the prompt
    ([_conv((U, "q1"), (A, "a1"), (U, "thanks"))], 3, [(["user"], "q1", "a1")]),
    # no assistant turn, or an assistant turn with no user turn before it: skipped
    ([_conv((U, "q")), _conv((S, "s"), (A, "hello")), _conv((U, "q3"), (A, "a3"))], 3,
     [(["user"], "q3", "a3")]),
    # the first `count` usable conversations, in order, indexed 0..count-1
    ([_conv((U, f"q{i}"), (A, f"a{i}")) for i in range(5)], 3,
     [(["user"], f"q{i}", f"a{i}") for i in range(3)]),
    ([_conv((U, "q"), (A, "a"))], 0, []),
    ([], 3, []),
])
def test_choose_prompts(conversations, count, expected):
    got = choose_prompts(conversations, count)
    assert [([t["role"] for t in p.turns], p.question, p.reference) for p in got] == expected
    assert [p.index for p in got] == list(range(len(expected)))


def test_choose_prompts_reads_conversation_objects_and_copies_turns():
    turns = _conv((U, "q"), (A, "a"))
    [p] = choose_prompts([_Conv(turns)])
    p.turns[0]["content"] = "changed"
    assert turns[0]["content"] == "q"


def test_render_uses_the_chat_template_with_the_generation_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    turns = _conv((S, "be brief"), (U, "Where is my card?"), (A, "Frozen."), (U, "And now?"))
    [p] = render(tok, [SamplePrompt(0, turns, "And now?", "Replaced.")])
    assert p.text == tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    closed = tok.apply_chat_template(turns, tokenize=False)
    assert p.text.startswith(closed) and len(p.text) > len(closed)  # + the generation prompt
    assert "Replaced." not in p.text and "Frozen." in p.text
    [item] = sink_items([p], ["an answer"])
    assert item == {"index": 0, "question": "And now?", "prompt": p.text,
                    "reference": "Replaced.", "answer": "an answer"}


def test_generate_greedy_with_and_without_the_adapter(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM", init_lora_weights=False))
    with torch.no_grad():  # a strong random adapter: its answers differ from the base model's
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 2.0)
    model.train()
    prompts = render(tok, choose_prompts([_conv((U, "hello there"), (A, "hi")),
                                          _conv((S, "long"), (U, "a much longer question " * 5),
                                                (A, "ok"))]))
    with_adapter = generate(model, tok, prompts)
    assert model.training  # put back in training mode
    assert with_adapter == generate(model, tok, prompts)  # greedy: the same every time
    without = generate(model, tok, prompts, adapter=False)
    with model.disable_adapter():
        assert without == generate(model, tok, prompts)
    assert with_adapter != without and any(with_adapter)  # the adapter changes the answers
    # a batch of two gives what each prompt alone gives (left padding is masked)
    assert [generate(model, tok, [p])[0] for p in prompts] == with_adapter
    ids = tok(with_adapter[0], add_special_tokens=False)["input_ids"]
    assert len(ids) <= MAX_NEW_TOKENS + 2
    assert generate(model, tok, []) == []
    short = generate(model, tok, prompts, max_new_tokens=2, max_prompt_tokens=8)
    assert all(len(tok(a, add_special_tokens=False)["input_ids"]) <= 4 for a in short)


@pytest.mark.parametrize("spent,last,elapsed,budget,expected", [
    (0.0, 1.0, 100.0, 0.1, True),     # 1 s of 101 s
    (9.0, 1.0, 100.0, 0.1, True),     # 10 s of 101 s: just within 10 %
    (10.0, 1.0, 100.0, 0.1, False),   # 11 s of 101 s
    (10.0, 1.0, 10.0, 0.15, False),   # a fast run: the samples would dominate it
    (10.0, 1.0, 10.0, None, True),    # no budget
    (10.0, 1.0, 10.0, 1.0, True),
])
def test_within_budget(spent, last, elapsed, budget, expected):
    assert within_budget(spent, last, elapsed, budget) is expected


def test_the_loop_keeps_samples_within_their_budget_but_always_samples_both_ends(tmp_path):
    import torch

    from ray_jobs.worker.loop import train_loop_per_worker
    from ray_jobs.worker.runtime import InProcessRuntime
    from ray_jobs.worker.sinks import CollectingSink
    from tests.ray_jobs.test_train_lora import FAST, SAMPLE_V4, _split_seed

    sink = CollectingSink()
    config = dict(FAST, validation_seed=_split_seed(), num_epochs=2, eval_every_steps=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_loop_per_worker(
            {"config": config, "dataset": SAMPLE_V4, "output": str(tmp_path / "adapter"),
             "home": str(tmp_path / "home"), "sink": sink, "eval_samples_budget": 1e-6},
            runtime=InProcessRuntime(str(tmp_path / "runs"), "run"))
    finally:
        torch.set_num_threads(threads)
    last = result["total_steps"]
    assert [e["step"] for e in sink.of("samples")] == [0, last]
    skipped = [e["message"] for e in sink.of("log") if "samples skipped" in e["message"]]
    assert len(skipped) == last - 1 and "at step 1:" in skipped[0]
    assert result["eval_samples"]["seconds"] > 0
