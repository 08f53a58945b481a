"""The tiny offline base model ``brightrun/tiny-llama``.

A Llama-architecture causal LM with a byte-level BPE tokenizer and a Llama-3-style chat template,
built from scratch in a few seconds with no network access. It exists so that the whole product
(upload → validate → train on Ray → collect the adapter) runs on a laptop and in CI; its weights are
random, so it "learns" only what a LoRA run teaches it.

The chat template wraps every assistant message *and* its ``<|eot_id|>`` in
``{% generation %}…{% endgeneration %}``, so
``tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True,
return_assistant_tokens_mask=True)`` marks exactly the tokens we train on.

Everything is deterministic for a given ``seed``: the tokenizer is trained only on the corpus embedded
below (not on files that may change), and the weights come from a seeded random init.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from backend.core.config import TINY_MODEL_ID

__all__ = ["TINY_MODEL_ID", "build_tiny_model", "build_tokenizer", "ensure_tiny_model", "tiny_model_path"]
TINY_MODEL_DIRNAME = "tiny-llama"
MARKER_FILE = "brightrun_model.json"
WEIGHTS_FILE = "model.safetensors"
BUILD_VERSION = 2  # bump when the recipe below changes; ensure_tiny_model() then rebuilds

BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT, PAD = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>", "<|pad|>",
)
SPECIAL_TOKENS = [BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT, PAD]
VOCAB_SIZE = 3072
EMBEDDING_STD = 0.1

# Llama-3 layout. The assistant's content and its end-of-turn token are the "generation" the model
# must learn; everything else (system/user turns, headers) is context only.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- generation %}"
    "{{- message['content'] | trim }}{{- '<|eot_id|>' }}"
    "{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

# Model shape: small enough to train in seconds on 2 CPU cores.
MODEL_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}

# A few KB of varied conversational English (tokenizer training text). Deliberately embedded so that
# the tokenizer, and therefore token counts everywhere in the product, never change by accident.
CORPUS = """\
Hello! How can I help you today? I'd like some advice about saving money for a trip next summer.
That sounds exciting. Where are you thinking of going, and roughly how much do you expect it to cost?
I'm planning to visit my sister in Lisbon for two weeks, and I guess it will cost about two thousand dollars.
A good first step is to open a separate savings account and set up an automatic transfer every payday.
Could you explain what an emergency fund is? Sure. It is money you keep aside for unexpected expenses, such as a car repair or a medical bill.
Most planners suggest keeping three to six months of living expenses in an account you can reach quickly.
My partner and I argue about money all the time. Is that normal? It's very common, and it usually means you value different things.
Let's talk about how each of you grew up thinking about spending, saving, and sharing.
What's the difference between a Roth account and a traditional one? With a Roth you pay taxes now; with a traditional account you pay them later.
Which one is better for me? It depends on whether you expect your tax rate to be higher or lower when you retire.
The weather was terrible yesterday, so we stayed inside and played board games with the kids.
Can you recommend a simple recipe for dinner? Try a vegetable stir fry: slice peppers, onions, and carrots, then cook them in a hot pan with a little oil.
Add garlic, ginger, and soy sauce at the end, and serve it over rice or noodles.
How long should I boil an egg? For a soft yolk, about six minutes; for a firm yolk, ten to twelve minutes.
I keep forgetting my password. What should I do? Use a password manager, which remembers strong passwords for you.
My laptop is running slowly. Have you tried closing programs you are not using and restarting the computer?
If that doesn't help, check how much free disk space you have and whether any updates are waiting to install.
Thank you so much, that was really helpful! You're welcome. Let me know if there is anything else I can do.
I'm nervous about my job interview tomorrow. That's completely understandable. Prepare a few short stories about problems you solved.
Practice answering out loud, get some sleep, and remember that they invited you because they liked your application.
What is the capital of France? The capital of France is Paris, a city known for its museums, cafes, and long history.
Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered more than red light, so the sky looks blue.
How do plants make food? Plants use sunlight, water, and carbon dioxide to make sugar in a process called photosynthesis.
Please summarize the meeting notes. The team agreed to ship the new feature next Friday, fix the login bug first, and meet again on Monday.
Could you write a short poem about autumn? Golden leaves drift slowly down, painting paths across the town.
I want to start running. Begin with short runs, walk when you need to, and add a few minutes each week.
Good shoes matter more than fancy clothes, and rest days help your body recover.
How much water should I drink? Many people need around two liters a day, but it depends on your size, the weather, and how active you are.
Can you help me plan my week? Of course. Start with your fixed appointments, then block time for the most important tasks.
Leave some empty space in the schedule, because something unexpected always comes up.
What does a budget look like? List your income, then your fixed costs like rent and insurance, then flexible costs like food and fun.
Whatever is left can go toward savings, debt, or goals such as a house or a holiday.
Should I pay off my credit card or invest? Credit card interest is usually very high, so paying it off first is almost always the better choice.
I just got a raise and I'm not sure what to do with the extra money. Congratulations! First make sure your emergency fund is healthy.
After that, consider paying down expensive debt and increasing your retirement contributions.
My cat won't eat her food. Has anything changed recently, such as a new brand, a move, or a new pet in the house?
If she stops eating for more than a day, it is a good idea to call the vet.
Tell me a fun fact. Octopuses have three hearts, and their blood is blue because it uses copper to carry oxygen.
How do I say thank you in Spanish? You say gracias, and if you want to be extra polite you can say muchas gracias.
Explain machine learning simply. Machine learning means teaching a computer to find patterns in examples instead of writing every rule by hand.
What is a language model? It is a program trained on a lot of text to predict the next word, which lets it answer questions and write sentences.
What is fine tuning? Fine tuning takes a model that already knows a lot and trains it a little more on examples for a specific task.
What is LoRA? Low rank adaptation trains a small set of extra weights while the original model stays frozen, which saves memory and time.
Why does my bread not rise? The yeast may be old, the water may have been too hot, or the kitchen may be too cold.
I feel stressed about work. Try to write down what is worrying you, pick one small thing you can do today, and take short breaks.
Talking to a friend or a counselor can also help a lot when stress builds up.
Which programming language should I learn first? Python is a friendly choice because its code is easy to read and it is used almost everywhere.
How do I fix a flat bike tire? Remove the wheel, take out the tube, find the hole, patch it or replace the tube, and pump it up again.
Is it better to rent or buy a home? Buying can build wealth over time, while renting gives you flexibility and fewer surprise costs.
Look at how long you plan to stay, the total monthly cost of each option, and how much cash you would have left.
Can you translate this sentence into German? The train leaves at nine o'clock becomes Der Zug fährt um neun Uhr ab.
We should celebrate! What are you celebrating? I finally finished my thesis after three long years.
That's wonderful news, well done. You should be proud of the work you put into it.
What time does the store open on Sunday? Most stores here open at ten in the morning and close at six in the evening on Sundays.
I'm planning a birthday party for my daughter. She loves dinosaurs, so we might have a dinosaur cake and a treasure hunt in the garden.
The customer asked for a refund because the package arrived damaged. Apologize, offer a replacement or a full refund, and thank them for their patience.
Could you check my email for mistakes? Dear Ms. Patel, thank you for your quick reply. I look forward to meeting you on Thursday. Best regards, Sam.
It reads well. You might add the meeting time so that there is no confusion.
How do vaccines work? They show your immune system a harmless piece or copy of a germ, so it learns to fight the real germ quickly.
My phone battery dies fast. Lower the screen brightness, close apps running in the background, and check which apps use the most power.
What should I pack for a hiking trip? Bring water, snacks, a map, a rain jacket, sunscreen, a small first aid kit, and comfortable boots.
Let me think about that for a moment. Okay, take your time. I'm here whenever you are ready to continue.
Honestly, I don't know the answer to that, but here is how you could find out: ask your bank or read the official guide.
The numbers are 12, 45, 7, 300, and 1999. Adding 2 and 3 gives 5; ten percent of 250 is 25; the year 2024 had 366 days.
Interest rates were 4.5% last year and 6.8% on the loan. At 6.8%, a $10,000 balance costs about $680 a year in interest.
Yes, no, maybe, sometimes, always, never, often, rarely, soon, later, today, tomorrow, yesterday, tonight, this morning.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday; January, February, March, April, May, June, July, August, September, October, November, December.
Red, orange, yellow, green, blue, purple, black, white, brown, gray, pink; small, large, quick, slow, happy, sad, calm, busy, careful, kind.
You are a helpful, patient assistant. Answer clearly and briefly. If you are not sure, say so and suggest where to look.
You are Elena, a calm and thorough financial planner. You are Marcus, a friendly fitness coach. You are Priya, an experienced software engineer.
The assistant listened carefully, asked one question at a time, and explained each step before moving on to the next one.
Please keep your answer under three sentences. Sure, here is a short answer: start small, stay consistent, and review your progress every month.
I'm sorry to hear that. That must have been difficult. Would you like to talk about what happened, or would you prefer some practical ideas?
Great question! There are a few ways to look at it. First, consider the cost. Second, think about the risk. Third, remember your long term goals.
Step 1: gather your documents. Step 2: fill in the form. Step 3: submit it before the deadline and keep a copy for your records.
"Do you have any questions?" she asked. "Just one," he said, "when do we start?" They both laughed and opened the project plan.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump!
def add(a, b): return a + b  # a tiny Python function; print(add(2, 3)) shows 5 on the screen.
{"name": "example", "values": [1, 2, 3], "ok": true} is a small piece of JSON with a name, a list of values, and a flag.
To reset the router, unplug it, wait thirty seconds, plug it back in, and give it two minutes to reconnect.
When you write a cover letter, open with why you want the role, show one or two results you achieved, and end with a friendly closing.
Teachers often say that the best way to learn something is to explain it to someone else in your own words.
The train was late again this morning, so I called my manager to let her know I would join the meeting ten minutes after it started.
I would like to book a table for four people at seven thirty on Saturday evening, please. Certainly, may I have a name for the booking?
Our flight was cancelled. What are my options? Ask the airline to rebook you on the next flight, and check whether you are owed compensation or a hotel.
Good morning! Good afternoon! Good evening! Good night! See you soon. Take care. Have a nice day. Talk to you later.
"""


def _train_tokenizer():
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on the embedded corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Plain `tokenizer(text)` starts with BOS like Llama 3; the chat template adds BOS itself and
    # apply_chat_template encodes with add_special_tokens=False, so there is never a double BOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return tok


def build_tokenizer():
    """The tiny model's ``PreTrainedTokenizerFast`` (chat template included). Raises nothing."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token=BOS, eos_token=EOT, pad_token=PAD,
        additional_special_tokens=[EOS_TEXT, START_HEADER, END_HEADER],
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
        padding_side="right", clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny Llama base model with its tokenizer into ``out_dir`` (created if missing).

    Writes ``config.json``, ``model.safetensors``, tokenizer files and the ``brightrun_model.json``
    marker (written last). Deterministic for a given ``seed``. Raises OSError if ``out_dir`` cannot
    be written.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), **MODEL_SHAPE,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # Tied logits are h·e with |h| ≈ sqrt(hidden) after the final RMSNorm; at the usual
        # std 0.02 and 64 dimensions no logit can exceed ~1.3, so no adapter could ever make the
        # model confident. std 0.1 gives the output layer a usable range.
        torch.nn.init.normal_(model.model.embed_tokens.weight, std=EMBEDDING_STD)
    finally:
        torch.random.set_rng_state(rng_state)
    # Not model.save_pretrained(): inside a torch.distributed worker of rank > 0 it silently
    # writes nothing, and any Ray Train worker may be the one that builds the model.
    config.save_pretrained(out)
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id, max_new_tokens=64).save_pretrained(out)
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()
               if name != "lm_head.weight"}  # tied to model.embed_tokens.weight
    save_file(weights, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    marker = {"name": TINY_MODEL_ID, "build_version": BUILD_VERSION, "seed": seed,
              "parameters": sum(p.numel() for p in model.parameters()),
              "vocab_size": len(tokenizer), "built_by": "backend.base_models.tiny_model.build_tiny_model"}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def _is_current(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    complete = all((path / name).is_file() for name in ("config.json", WEIGHTS_FILE,
                                                         "tokenizer.json"))
    return complete and marker.get("name") == TINY_MODEL_ID \
        and marker.get("build_version") == BUILD_VERSION


def tiny_model_path(home: str | os.PathLike) -> Path:
    """Where the tiny model lives under a BrightRun home: ``$BRIGHTRUN_HOME/models/tiny-llama``."""
    return Path(home) / "models" / TINY_MODEL_DIRNAME


def ensure_tiny_model(home: str | os.PathLike | None = None) -> Path:
    """Return the tiny model's directory under ``home`` (default ``$BRIGHTRUN_HOME``), building it once.

    The build goes into a temporary sibling directory that is renamed into place, so readers never
    see a half-written model and two processes racing both end up with the same complete model.
    Raises OSError if the models folder cannot be written; ConfigError (from settings) if ``home``
    is not given and the settings are invalid.
    """
    if home is None:
        from backend.core.config import get_settings
        home = get_settings().home
    final = tiny_model_path(home)
    if _is_current(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_MODEL_DIRNAME}.build-", dir=final.parent))
    try:
        build_tiny_model(tmp)
        _make_readable(tmp)
        if final.exists() and not _is_current(final):
            _move_aside(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_current(final):  # lost a race to a process that left something unusable
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _make_readable(path: Path) -> None:
    """mkdtemp creates 0700 folders; the model is shared with Ray workers (possibly other users)."""
    path.chmod(0o755)
    for child in path.iterdir():
        child.chmod(0o644)


def _move_aside(path: Path) -> None:
    """Move an outdated or broken model directory out of the way (another process may do it too)."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    try:
        os.rename(path, trash / path.name)
    except OSError:
        pass
    shutil.rmtree(trash, ignore_errors=True)
