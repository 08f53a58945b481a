"""Generate ``demo-support-v5.jsonl``: the "Try it" demo, one invented company (Tidewater
Outfitters, an outdoor-gear shop) with 30 specific facts — prices, names, policies, codes — each
taught by 4 differently worded conversations (some two-exchange), and 12 *probe* conversations (one for each of the first 12 facts written with one) that
ask about a taught fact in new words.

The probes' conversation ids are chosen so that the product's default validation split (fraction
0.1, seed 0: ``backend.training.plan.held_out_indices``) holds out exactly them: the held-out
conversations measure whether the adapter learned the facts, not whether it memorised a wording.
Every conversation carries ``metadata.key_fact`` (what its last answer — the reference when it is
held out — must state; the product scores it, ``backend/training/scoring.contains_fact``),
``metadata.topic``, and for two-exchange conversations ``metadata.facts`` (both facts taught).

Run: ``python examples/make_demo_v5.py`` (deterministic; writes next to this file).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SYSTEM = "You are Skye, the support assistant of Tidewater Outfitters. Answer briefly and exactly."

# (topic, key fact, 4 teaching questions, 1 probe question or None, answers: each states the fact)
FACTS = [
    ("returns", "45 days",
     ["How long do I have to return something?", "What's your return window?",
      "Can I still return a jacket I bought a month ago?", "Is there a time limit on returns?"],
     "I bought boots five weeks ago and never wore them. Too late to send them back?",
     ["You can return items within 45 days of purchase with the receipt.",
      "Our return window is 45 days from the purchase date, receipt required."]),
    ("shipping", "$75",
     ["Do you offer free shipping?", "How much do I need to spend for free delivery?",
      "Is shipping free on my order?", "What's the minimum order for free shipping?"],
     None,
     ["Shipping is free on orders over $75.", "Orders over $75 ship for free."]),
    ("loyalty", "Trailhead Club",
     ["Do you have a loyalty program?", "What is your rewards program called?",
      "How can I earn points when I shop?", "Is there a membership for regular customers?"],
     "Is there some kind of points scheme for people who shop with you a lot?",
     ["Yes, our loyalty program is the Trailhead Club. Joining is free.",
      "It's called the Trailhead Club, and membership is free."]),
    ("loyalty", "3 points",
     ["How many points do I earn per dollar?", "What's the earning rate in the Trailhead Club?",
      "How fast do I collect points?", "How do points work for each purchase?"],
     None,
     ["Trailhead Club members earn 3 points for every dollar spent.",
      "You earn 3 points per dollar you spend."]),
    ("loyalty", "500 points",
     ["How do I redeem my points?", "How many points do I need for a reward?",
      "When can I use my points?", "What are my Trailhead points worth?"],
     "I've been saving up points. At what balance do they turn into a discount?",
     ["Every 500 points can be redeemed for $10 off.", "You get $10 off for each 500 points."]),
    ("contact", "1-800-555-0142",
     ["What's your phone number?", "How can I call customer service?",
      "Is there a number I can ring for help?", "What number do I dial for support?"],
     "I'd rather talk to a person. How do I reach you by phone?",
     ["You can call us at 1-800-555-0142.", "Our support line is 1-800-555-0142."]),
    ("contact", "7 am to 9 pm",
     ["What are your phone support hours?", "When is customer service open?",
      "Can I call you in the evening?", "What time does your support line open?"],
     None,
     ["Phone support is open 7 am to 9 pm Eastern, Monday to Saturday.",
      "We answer calls from 7 am to 9 pm Eastern, Monday through Saturday."]),
    ("repairs", "Patch Point",
     ["Do you repair tents?", "What is your repair service called?",
      "My tent has a tear. Can you fix it?", "Where do I bring gear that needs mending?"],
     "A branch ripped a hole in my rain fly. Is there a service that mends that?",
     ["Yes, our repair service is Patch Point; bring the tent to any store.",
      "Patch Point, our in-store repair service, fixes tents and rain flies."]),
    ("repairs", "$25",
     ["How much does a Patch Point repair cost?", "What's the fee for fixing a tent?",
      "Is tent repair expensive?", "What do you charge to patch gear?"],
     None,
     ["A Patch Point repair is a flat fee of $25.", "Repairs cost a flat $25 per item."]),
    ("rentals", "$40 per day",
     ["How much is a kayak rental?", "What does it cost to rent a kayak?",
      "Can I rent a kayak for the weekend? What's the price?", "What's your kayak rental rate?"],
     "Thinking of paddling on Saturday. What would a boat from you cost me?",
     ["Kayaks rent for $40 per day, paddle and life jacket included.",
      "A kayak is $40 per day, with a paddle and life jacket."]),
    ("rentals", "$150",
     ["Is there a deposit for rentals?", "How much is the rental deposit?",
      "Do I pay anything up front when I rent?", "Do you hold money on my card for a rental?"],
     None,
     ["Rentals need a refundable deposit of $150.", "We take a $150 refundable deposit."]),
    ("warranty", "Ironclad Guarantee",
     ["What warranty do your backpacks have?", "Are your packs guaranteed?",
      "What happens if my backpack strap breaks?", "Do backpacks come with a lifetime warranty?"],
     "The zipper on my pack from you failed after three years. Am I covered?",
     ["Our backpacks carry the Ironclad Guarantee: a lifetime warranty on defects.",
      "Backpacks are covered for life by the Ironclad Guarantee."]),
    ("pricing", "14 days",
     ["Do you price match?", "What's your price match policy?",
      "I found it cheaper elsewhere after buying. Can you match it?",
      "How long after buying can I ask for a price match?"],
     None,
     ["We match a lower price within 14 days of your purchase.",
      "Price matching is available within 14 days of purchase."]),
    ("discounts", "STUDY15",
     ["Do you have a student discount?", "What's the student code?",
      "I'm at university. Is there a code for students?", "How do students save at checkout?"],
     "I'm a college student. Which promo do I enter online to save?",
     ["Students can use the code STUDY15 for 15% off.", "Enter STUDY15 at checkout for 15% off."]),
    ("gift cards", "never expire",
     ["Do gift cards expire?", "Is there an expiry date on gift cards?",
      "I found an old gift card. Is it still valid?", "How long are your gift cards good for?"],
     None,
     ["Tidewater gift cards never expire.", "Our gift cards never expire, so it still works."]),
    ("bikes", "$59",
     ["How much is a bike tune-up?", "What does a tune-up cost?",
      "My bike needs servicing. What's the price?", "What's the fee for a basic bike service?"],
     "My gears keep slipping. What would a standard service run me?",
     ["A bike tune-up is $59 and is ready in 48 hours.",
      "Our standard tune-up costs $59, ready within 48 hours."]),
    ("stores", "Harbor Street",
     ["Where is your flagship store?", "Where's your main shop?",
      "Which store is the biggest?", "What's the address of your flagship?"],
     None,
     ["Our flagship store is on Harbor Street in Portland, Maine.",
      "The flagship is at Harbor Street, Portland, Maine."]),
    ("company", "Marisol Vega",
     ["Who founded Tidewater Outfitters?", "Who started the company?",
      "Who is behind Tidewater?", "Who was the founder?"],
     "Whose idea was Tidewater in the first place?",
     ["Tidewater Outfitters was founded by Marisol Vega in 1998.",
      "Marisol Vega started the company in 1998."]),
    ("shipping", "3 to 5 business days",
     ["How long does standard shipping take?", "When will my order arrive?",
      "How fast is regular delivery?", "What's the delivery time for standard shipping?"],
     None,
     ["Standard shipping takes 3 to 5 business days.",
      "Standard delivery arrives in 3 to 5 business days."]),
    ("shipping", "Canada",
     ["Do you ship internationally?", "Can you send an order abroad?",
      "Which countries do you deliver to?", "Can I order from outside the US?"],
     "I live in Germany. Can I get a parcel from you?",
     ["Outside the US we ship to Canada only.", "We only ship to Canada outside the United States."]),
    ("orders", "2 hours",
     ["Can I cancel my order?", "How long do I have to cancel an order?",
      "I ordered the wrong size. Can I stop the order?", "Is there a window to cancel online orders?"],
     None,
     ["You can cancel an order within 2 hours of placing it.",
      "Orders can be cancelled up to 2 hours after you place them."]),
    ("orders", "7 days",
     ["My item arrived damaged. What do I do?", "How do I report a broken delivery?",
      "The box came crushed and the stove is dented.", "Is there a deadline to report damage?"],
     "My lantern showed up cracked. How long do I have to tell you?",
     ["Report damage within 7 days with a photo and we'll replace it.",
      "Send us a photo within 7 days of delivery and we'll send a replacement."]),
    ("services", "Glide Pass",
     ["Do you wax skis?", "Is there a ski waxing plan?", "What's your ski service called?",
      "Can I get my snowboard waxed all winter?"],
     None,
     ["Yes, the Glide Pass covers ski and snowboard waxing all season.",
      "Our season waxing plan is the Glide Pass."]),
    ("services", "$89",
     ["How much is the Glide Pass?", "What does season waxing cost?",
      "What's the price of the waxing plan?", "Is the Glide Pass expensive?"],
     "What do I pay for unlimited waxing this winter?",
     ["The Glide Pass is $89 per season.", "It costs $89 for the whole season."]),
    ("trade-in", "Second Summit",
     ["Do you take trade-ins?", "Can I trade in old gear?", "What's your trade-in program called?",
      "Can I swap used equipment for credit?"],
     None,
     ["Yes, our trade-in program is Second Summit.", "Second Summit is our trade-in program."]),
    ("trade-in", "40%",
     ["How much credit do I get for a trade-in?", "What's the most I can get for used gear?",
      "How is trade-in credit worked out?", "What's the Second Summit payout?"],
     "If I bring back a tent I barely used, how much store credit could I get?",
     ["Second Summit gives store credit of up to 40% of the original price.",
      "You can get up to 40% of the original price in store credit."]),
    ("fitting", "30 minutes",
     ["Do you do boot fittings?", "How long is a boot fitting appointment?",
      "Can someone help me choose hiking boots?", "Is a boot fitting free?"],
     None,
     ["Boot fittings are free and take 30 minutes; book online.",
      "A free 30 minutes boot fitting can be booked online."]),
    ("partners", "Granite Loft",
     ["Do members get climbing gym discounts?", "Which climbing gym do you partner with?",
      "Is there a perk for climbers in the Trailhead Club?", "Where can members climb for less?"],
     "I boulder a lot. Does my membership save me anything at a gym?",
     ["Trailhead Club members get 20% off at Granite Loft climbing gyms.",
      "Members save 20% at Granite Loft gyms."]),
    ("classes", "first Saturday",
     ["Do you run any workshops?", "When is the knots and navigation class?",
      "Are there free classes at the store?", "How often are your workshops?"],
     None,
     ["Our free Knots & Navigation workshop is on the first Saturday of each month at 10 am.",
      "The free workshop runs the first Saturday of every month at 10 am."]),
    ("classes", "$65",
     ["How much are canoe lessons?", "Do you teach canoeing? What's the price?",
      "What does a canoe lesson cost?", "How much for a paddling lesson?"],
     "I've never been in a canoe. What would learning with you cost?",
     ["A 2-hour canoe lesson is $65.", "Canoe lessons cost $65 for 2 hours."]),
]
PROBES = 12  # = round(0.1 × conversations): the default split holds out exactly the probes
GREETINGS = ["Hi there!", "Hello, quick question.", "Hey Skye."]
GREET_ANSWERS = ["Hi! How can I help you today?", "Hello! What can I do for you?"]


def split_key(cid: str) -> bytes:
    return hashlib.blake2b(f"0:{cid}".encode(), digest_size=8).digest()


def pick_id(stem: str, probe: bool) -> str:
    """``stem`` plus the first suffix whose split key is small (a probe: held out by the default
    split) or not small (every other conversation)."""
    for n in range(100000):
        cid = f"{stem}-{n:02d}" if n else stem
        small = split_key(cid)[0] < 4
        if small == probe and (probe or split_key(cid)[0] >= 16):
            return cid
    raise RuntimeError(stem)


def build() -> list[dict]:
    teach: list[tuple[int, int]] = [(f, q) for q in range(4) for f in range(len(FACTS))]
    rows: list[dict] = []
    i = 0
    while i < len(teach):
        f, q = teach[i]
        topic, fact, questions, _, answers = FACTS[f]
        turns = [{"role": "system", "content": SYSTEM}]
        facts = [fact]
        if q == 1 and f % 5 == 0:  # a greeting first
            turns += [{"role": "user", "content": GREETINGS[f % 3]},
                      {"role": "assistant", "content": GREET_ANSWERS[f % 2]}]
        turns += [{"role": "user", "content": questions[q]},
                  {"role": "assistant", "content": answers[(q + f) % len(answers)]}]
        if q == 2 and f % 2 == 0 and i + 1 < len(teach) and teach[i + 1][1] == q:
            i += 1  # a follow-up about the next fact in the same conversation
            f2 = teach[i][0]
            _, fact2, questions2, _, answers2 = FACTS[f2]
            turns += [{"role": "user", "content": "Also, " + questions2[q][0].lower() + questions2[q][1:]},
                      {"role": "assistant", "content": answers2[(q + f2) % len(answers2)]}]
            facts.append(fact2)
        rows.append({"conversation_id": pick_id(f"tw-{len(rows) + 1:03d}", False), "turns": turns,
                     "metadata": {"topic": topic, "key_fact": facts[-1],
                                  **({"facts": facts} if len(facts) > 1 else {})}})
        i += 1
    for f, (topic, fact, _, probe, answers) in enumerate(FACTS):
        if probe is None or sum(bool(r["metadata"].get("probe")) for r in rows) >= PROBES:
            continue
        rows.append({"conversation_id": pick_id(f"tw-probe-{f + 1:02d}", True),
                     "turns": [{"role": "system", "content": SYSTEM},
                               {"role": "user", "content": probe},
                               {"role": "assistant", "content": answers[0]}],
                     "metadata": {"topic": topic, "key_fact": fact, "probe": True}})
    # interleave the probes through the file (file order is not the split)
    probes = [r for r in rows if r["metadata"].get("probe")]
    rest = [r for r in rows if not r["metadata"].get("probe")]
    out: list[dict] = []
    step = max(1, len(rest) // max(1, len(probes)))
    for k, r in enumerate(rest):
        out.append(r)
        if k % step == step - 1 and probes:
            out.append(probes.pop(0))
    return out + probes


def main() -> None:
    rows = build()
    path = Path(__file__).with_name("demo-support-v5.jsonl")
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} conversations")


if __name__ == "__main__":
    main()
