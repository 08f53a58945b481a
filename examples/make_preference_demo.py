"""Write examples/preference-demo.jsonl: 60 deterministic preference pairs for DPO.

Each prompt is a small customer-support or arithmetic question; ``chosen`` answers it politely and
correctly, ``rejected`` is curt, unhelpful or wrong. Rows alternate between the standard form
(``prompt`` a string) and the conversational form (``prompt`` a list of messages). Run:
``python examples/make_preference_demo.py`` (no arguments; same output every time).
"""
from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "You are a friendly support assistant for BrightRun."
TOPICS = [("reset my password", "open Settings → Account, choose “Reset password” and follow the "
           "link we email you"),
          ("change my billing address", "open Billing → Details, edit the address and press Save"),
          ("export my data", "open Settings → Privacy and choose “Export data”; the archive arrives "
           "by email within an hour"),
          ("cancel my subscription", "open Billing → Plan and choose “Cancel plan”; you keep access "
           "until the end of the period"),
          ("invite a teammate", "open Team → Members, press “Invite” and enter their email"),
          ("turn on two-factor login", "open Settings → Security and choose “Enable two-factor”"),
          ("download an invoice", "open Billing → Invoices and press the download icon next to it"),
          ("rename my project", "open the project, choose Settings → General and edit the name"),
          ("delete a dataset", "open Datasets, pick the dataset and choose “Delete” from its menu"),
          ("see my usage", "open Billing → Usage; it shows this month’s GPU hours")]
CURT = ["Not my problem.", "Figure it out yourself.", "Read the manual.", "Can't help.",
        "Why would you even ask that?", "No idea."]


def pairs() -> list[dict]:
    rows = []
    for i, (task, how) in enumerate(TOPICS):
        for j, opener in enumerate(("How do I", "How can I", "Where do I go to")):
            question = f"{opener} {task}?"
            rows.append(_row(len(rows), question, f"Happy to help! To {task.replace('my ', 'your ')}, {how}.",
                             CURT[(i + j) % len(CURT)]))
    for k in range(30):
        a, b = 3 + (k * 7) % 41, 2 + (k * 11) % 37
        question = f"What is {a} + {b}?"
        rows.append(_row(len(rows), question, f"Sure! {a} + {b} = {a + b}.",
                         f"{a + b + 1 + k % 3}. Obviously."))
    return rows


def _row(n: int, question: str, chosen: str, rejected: str) -> dict:
    if n % 2:
        return {"id": f"pair-{n:03d}", "prompt": question, "chosen": chosen, "rejected": rejected}
    return {"id": f"pair-{n:03d}",
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


if __name__ == "__main__":
    out = Path(__file__).with_name("preference-demo.jsonl")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pairs()), "utf-8")
    print(f"wrote {len(pairs())} pairs to {out}")
