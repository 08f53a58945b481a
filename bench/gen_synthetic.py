"""Generate a deterministic synthetic brightrun_lora_v4 JSONL file of about N MB.

    python bench/gen_synthetic.py --size-mb 50 --out bench/out/synthetic-50mb.jsonl [--seed 0]

Conversations look like support chats: an optional system prompt (70 %), 1-4 user/assistant
exchanges, user turns of 8-60 words and assistant turns of 20-160 words drawn from a fixed vocabulary.
Same size and seed -> byte-identical file.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import orjson

WORDS = ("account balance card payment transfer refund invoice fee interest rate loan mortgage "
         "budget saving deposit withdrawal statement charge dispute limit credit debit branch "
         "online banking password reset verify identity address update phone email notification "
         "overdraft pending cleared posted merchant subscription cancel renew plan upgrade "
         "the a an to of and in for on with your you we I it is are was be can will please thank "
         "thanks help sure today tomorrow week month year days hours minutes business working "
         "check confirm review process request ticket number reference order delivery shipping "
         "return exchange warranty receipt total amount due date schedule automatic manual "
         "secure safe fraud alert block unblock replace lost stolen travel abroad currency "
         "exchange rate ATM cash back reward points cashback annual percentage yield tax form "
         "retirement IRA 401(k) contribution employer match portfolio stock bond fund index "
         "emergency fund goal spend track category report export download app website login "
         "two-factor code text message call support agent team manager escalate resolve issue "
         "sorry understand appreciate patience let me look into this right away here is how "
         "first second then next finally also however because so if when after before").split()
SYSTEMS = ("You are a friendly support agent for Northwind Bank. Be concise and accurate.",
           "You are Elena, a calm and thorough financial planner.",
           "You help customers of a subscription service with billing questions.",
           "You are a careful assistant for a credit union; never ask for full card numbers.")


def _sentence(rng: random.Random, n_words: int) -> str:
    words = rng.choices(WORDS, k=n_words)
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice((".", ".", ".", "?", "!"))


def random_text(rng: random.Random, low: int, high: int) -> str:
    remaining, parts = rng.randint(low, high), []
    while remaining > 0:
        n = min(remaining, rng.randint(6, 18))
        parts.append(_sentence(rng, n))
        remaining -= n
    return " ".join(parts)


def conversation(rng: random.Random, index: int) -> dict:
    """One synthetic v4 conversation (deterministic for a given rng state)."""
    turns = []
    if rng.random() < 0.7:
        turns.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(rng.randint(1, 4)):
        turns.append({"role": "user", "content": random_text(rng, 8, 60)})
        turns.append({"role": "assistant", "content": random_text(rng, 20, 160)})
    return {"conversation_id": f"syn-{index:08d}", "turns": turns,
            "metadata": {"source": "synthetic", "topic": rng.choice(("billing", "cards", "loans"))}}


def generate(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write about ``size_mb`` MB of conversations to ``path``; returns the number written."""
    rng = random.Random(seed)
    target = int(size_mb * 1024 * 1024)
    written = count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        while written < target:
            line = orjson.dumps(conversation(rng, count)) + b"\n"
            fh.write(line)
            written += len(line)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).parent / "out" / f"synthetic-{args.size_mb:g}mb.jsonl"
    n = generate(out, args.size_mb, args.seed)
    print(f"wrote {n} conversations, {out.stat().st_size / 2**20:.1f} MB to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
