"""The prefix-mask path (a chat template without ``{% generation %}`` tags) on the real SmolLM2 ChatML
template: for conversations from every supported format, exactly each assistant turn's content and
its ``<|im_end|>`` are trained; the injected default system prompt, system and user turns are not;
the ids are what the tokenizer's chat template renders."""
from __future__ import annotations

import pytest

from backend.datasets.formats import ALPACA, FORMATS, OPENAI, SHAREGPT, V3, V4, normalise
from backend.training.data import IGNORE_INDEX, encode_conversation, ensure_chat_template

pytestmark = pytest.mark.real_model

# One multi-turn conversation per format (Alpaca is single-turn by definition), with a system turn
# in some and none in others (then the template injects its default system prompt).
LINES = {
    V4: {"conversation_id": "c1", "turns": [
        {"role": "user", "content": "My order #123 has not arrived."},
        {"role": "assistant", "content": "Sorry about that! Could you confirm the delivery address?"},
        {"role": "user", "content": "12 Elm Street, Springfield."},
        {"role": "assistant", "content": "Thanks. I re-sent it today; it arrives by Friday."}]},
    V3: {"conversation_id": "c2", "system_prompt": "You are a billing assistant.",
         "training_pairs": [{"input": "Why was I charged twice?",
                             "output": "One charge is a pre-authorisation; it drops off in 3 days."},
                            {"input": "  Can you refund it now?  ",
                             "output": "Yes — refund issued.\n\nYou'll see it in 5 business days."}]},
    OPENAI: {"messages": [{"role": "developer", "content": "Answer briefly."},
                          {"role": "user", "content": "Reset my password"},
                          {"role": "assistant", "content": "Click 'Forgot password' on the login page."},
                          {"role": "user", "content": "Done, thanks!"},
                          {"role": "assistant", "content": "You're welcome 🙂"}]},
    SHAREGPT: {"conversations": [{"from": "human", "value": "¿Hablan español?"},
                                 {"from": "gpt", "value": "Sí, claro. ¿En qué puedo ayudarle?"},
                                 {"from": "human", "value": "Mi pedido llegó roto."},
                                 {"from": "gpt", "value": "Lo siento. Enviaremos uno nuevo hoy."}]},
    ALPACA: {"instruction": "Summarise the return policy.", "input": "30 days, receipt needed.",
             "output": "Returns are accepted within 30 days with a receipt."},
}


@pytest.fixture(scope="module")
def tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_dir, local_files_only=True)


def _spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of trained ids."""
    runs, current = [], []
    for tok, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            assert label == tok
            current.append(tok)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def test_smollm_template_takes_the_prefix_path(tokenizer):
    assert ensure_chat_template(tokenizer) == "prefix"
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exactly_assistant_content_and_im_end_are_trained(tokenizer, fmt):
    turns = normalise(LINES[fmt], fmt, 1).turns
    enc = encode_conversation(tokenizer, turns, max_seq_length=4096)
    rendered = tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"]
    assert enc.input_ids == list(rendered) and not enc.truncated

    assistants = [t["content"] for t in turns if t["role"] == "assistant"]
    trained = [tokenizer.decode(run) for run in _spans(enc.input_ids, enc.labels)]
    assert trained == [f"{content}<|im_end|>" for content in assistants]

    ignored = tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels)
                                if lab == IGNORE_INDEX])
    for turn in turns:
        if turn["role"] != "assistant":
            assert turn["content"] in ignored
    if turns[0]["role"] != "system":  # the template's default system prompt is context only
        assert "You are a helpful AI assistant named SmolLM" in ignored
    assert ignored.count("<|im_start|>assistant\n") == len(assistants)


def test_truncation_keeps_the_mask_aligned(tokenizer):
    turns = normalise(LINES[V4], V4, 1).turns
    full = encode_conversation(tokenizer, turns, max_seq_length=4096)
    cut = encode_conversation(tokenizer, turns, max_seq_length=len(full) - 5)
    n = len(cut)  # turn-aware: cut after the last assistant turn that fits (its end token kept)
    assert cut.truncated and 0 < n <= len(full) - 5
    assert cut.input_ids == full.input_ids[:n] and cut.labels == full.labels[:n]
    assert full.labels[n - 1] != -100 and full.labels[n] == -100
