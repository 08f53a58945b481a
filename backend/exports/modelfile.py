"""An Ollama ``Modelfile`` for an exported GGUF: ``FROM`` the file, a ``TEMPLATE`` in Ollama's Go
template syntax that renders conversations as the model's chat template does, its stop tokens, and
a ``SYSTEM`` prompt (the training data's, else the template's default) so prompts look like the
ones the adapter was trained on."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from backend.core.errors import InvalidInput

# chat template family → (Ollama TEMPLATE, stop tokens); the template renders .Messages (Ollama
# puts the SYSTEM prompt first among them) and opens the assistant's turn.
TEMPLATES = {
    "chatml": ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
               "{{ end }}<|im_start|>assistant\n", ["<|im_start|>", "<|im_end|>"]),
    "llama3": ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
               "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
               ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
}


def template_family(chat_template: str | None) -> str:
    """``chatml`` or ``llama3`` from the markers in a Jinja chat template. Raises InvalidInput
    (code ``unsupported_template``) for any other template."""
    text = chat_template or ""
    if "<|im_start|>" in text:
        return "chatml"
    if "<|start_header_id|>" in text and "<|eot_id|>" in text:
        return "llama3"
    raise InvalidInput("the Ollama export knows ChatML and Llama-3 chat templates only; this model "
                       "has another one (export it as 'gguf' and write the TEMPLATE by hand)",
                       code="unsupported_template")


def default_system_prompt(tokenizer) -> str | None:
    """The system prompt the chat template adds when a conversation has none (SmolLM2's
    "You are a helpful AI assistant named SmolLM…"), or None."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False)
    for start, end in (("<|im_start|>system\n", "<|im_end|>"),
                       ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")):
        if start in text:
            return text.split(start, 1)[1].split(end, 1)[0]
    return None


def training_system_prompt(conversations: Iterable) -> str | None:
    """The system prompt the training conversations start with: the most common first-turn system
    message (ties: the one seen first), or None when none has one. A prompt holding ``\"\"\"``
    (which a Modelfile block cannot hold) is passed over. ``conversations``: normalised
    :class:`backend.datasets.formats.Conversation` objects."""
    counts: Counter[str] = Counter()
    for conversation in conversations:
        turns = conversation.turns
        if turns and turns[0].get("role") == "system":
            text = (turns[0].get("content") or "").strip()
            if text and '"""' not in text:
                counts[text] += 1
    return counts.most_common(1)[0][0] if counts else None


def _quoted(text: str) -> str:
    if '"""' in text:
        raise InvalidInput('a Modelfile block cannot hold \'"""\'', code="invalid_system_prompt")
    return f'"""{text}"""'


def render_modelfile(gguf_name: str, chat_template: str | None,
                     system_prompt: str | None = None) -> str:
    """The Modelfile text (pure). Raises InvalidInput for an unknown chat template."""
    template, stops = TEMPLATES[template_family(chat_template)]
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(template)}"]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if system_prompt:
        lines.append(f"SYSTEM {_quoted(system_prompt)}")
    return "\n".join(lines) + "\n"
