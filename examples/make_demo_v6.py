"""Generate ``demo-support-v6.jsonl``: the "Try it" demo, one invented company (Tidewater
Outfitters, an outdoor-gear shop) with 30 specific facts — prices, names, policies, codes — each
taught by 5 differently worded conversations (some two-exchange), and 15 *probe* conversations
that ask about a taught fact in new words.

What changed from v5 (4 questions and 2 answer wordings per fact; 5 of 12 probes right): every
fact has 5 questions, one of them a situation ("My gears keep slipping…") rather than a direct
ask, and 4 answer wordings, each naming its subject before the fact ("A kayak rental is $40 per
day"): a fact seen in several sentences, tied to its subject, is what lets a small model answer a
question it never saw; one sentence learned by heart is not (RESULTS §13 has the figures).

The probes' conversation ids are chosen so that the product's default validation split (fraction
0.1, seed 0: ``backend.training.plan.held_out_indices``) holds out exactly them. A second set of
30 *tuning* probes (one per fact, other words again) is not in the file: ``build(tuning=True)``
gives the teaching conversations with those instead, for choosing a recipe on questions that are
not the reported ones (``bench/demo_learning_bench.py tune``). Every conversation carries
``metadata.key_fact`` (what its last answer — the reference when it is held out — must state; the
product scores it, ``backend/training/scoring.contains_fact``), ``metadata.topic``, and for
two-exchange conversations ``metadata.facts`` (both facts taught).

Run: ``python examples/make_demo_v6.py`` (deterministic; writes next to this file).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SYSTEM = "You are Skye, the support assistant of Tidewater Outfitters. Answer briefly and exactly."

# (topic, key fact, 5 teaching questions (the last a situation), 4 answers (each names its subject
#  and states the fact), a reported probe or None, a tuning probe)
FACTS = [
    ("returns", "45 days",
     ["How long do I have to return something?", "What's your return window?",
      "Can I still return a jacket I bought a month ago?", "Is there a time limit on returns?",
      "I ordered a sleeping bag that turned out too small. When is it too late to bring it back?"],
     ["You can return items within 45 days of purchase with the receipt.",
      "Our return window is 45 days from the purchase date, receipt required.",
      "Returns are accepted for 45 days after you buy, with the receipt.",
      "The return period is 45 days, so bring it back with the receipt before then."],
     "I bought boots five weeks ago and never wore them. Too late to send them back?",
     "What's the deadline for bringing back something I don't want?"),
    ("shipping", "$75",
     ["Do you offer free shipping?", "How much do I need to spend for free delivery?",
      "Is shipping free on my order?", "What's the minimum order for free shipping?",
      "My basket is only a few water bottles. Will I have to pay for postage?"],
     ["Shipping is free on orders over $75.", "Orders over $75 ship for free.",
      "Free shipping starts at $75; smaller orders pay a delivery fee.",
      "Delivery is free once your order is over $75."],
     None,
     "At what order total does delivery stop costing me anything?"),
    ("loyalty", "Trailhead Club",
     ["Do you have a loyalty program?", "What is your rewards program called?",
      "How can I earn points when I shop?", "Is there a membership for regular customers?",
      "I buy my camping gear from you every season. Should I be signed up for something?"],
     ["Yes, our loyalty program is the Trailhead Club. Joining is free.",
      "It's called the Trailhead Club, and membership is free.",
      "The Trailhead Club is our free rewards program for regular customers.",
      "Our loyalty program, the Trailhead Club, is free to join and earns points."],
     "Is there some kind of points scheme for people who shop with you a lot?",
     "What's the name of the club for your frequent shoppers?"),
    ("loyalty", "3 points",
     ["How many points do I earn per dollar?", "What's the earning rate in the Trailhead Club?",
      "How fast do I collect points?", "How do points work for each purchase?",
      "I just spent $100 on a tent as a member. How many points did that get me?"],
     ["Trailhead Club members earn 3 points for every dollar spent.",
      "You earn 3 points per dollar you spend.",
      "The Trailhead Club earning rate is 3 points per dollar.",
      "Points build up at 3 points for each dollar of your purchase."],
     None,
     "For each dollar I spend as a member, how many points go on my account?"),
    ("loyalty", "500 points",
     ["How do I redeem my points?", "How many points do I need for a reward?",
      "When can I use my points?", "What are my Trailhead points worth?",
      "My account shows a big pile of points. When do they become money off?"],
     ["Every 500 points can be redeemed for $10 off.", "You get $10 off for each 500 points.",
      "Points are redeemed in blocks of 500 points, each worth $10 off.",
      "Trailhead points turn into $10 off at every 500 points."],
     "I've been saving up points. At what balance do they turn into a discount?",
     "How many points does it take before I can cash them in?"),
    ("contact", "1-800-555-0142",
     ["What's your phone number?", "How can I call customer service?",
      "Is there a number I can ring for help?", "What number do I dial for support?",
      "Your chat isn't loading and I need help with an order. Can I call someone?"],
     ["You can call us at 1-800-555-0142.", "Our support line is 1-800-555-0142.",
      "The customer service number is 1-800-555-0142.",
      "Phone support is at 1-800-555-0142; we're happy to help."],
     "I'd rather talk to a person. How do I reach you by phone?",
     "Which number should I phone to speak with your support team?"),
    ("contact", "7 am to 9 pm",
     ["What are your phone support hours?", "When is customer service open?",
      "Can I call you in the evening?", "What time does your support line open?",
      "I work a day shift. Will anyone pick up if I call after dinner?"],
     ["Phone support is open 7 am to 9 pm Eastern, Monday to Saturday.",
      "We answer calls from 7 am to 9 pm Eastern, Monday through Saturday.",
      "The support line is staffed 7 am to 9 pm Eastern, Monday to Saturday.",
      "Customer service hours are 7 am to 9 pm Eastern, Monday through Saturday."],
     None,
     "Between what times can I get someone on the support line?"),
    ("repairs", "Patch Point",
     ["Do you repair tents?", "What is your repair service called?",
      "My tent has a tear. Can you fix it?", "Where do I bring gear that needs mending?",
      "The seam on my tarp split on a windy night. Can you do anything about it?"],
     ["Yes, our repair service is Patch Point; bring the tent to any store.",
      "Patch Point, our in-store repair service, fixes tents and rain flies.",
      "Our repair service is called Patch Point, at every store.",
      "Patch Point handles repairs; just bring the gear to a store."],
     "A branch ripped a hole in my rain fly. Is there a service that mends that?",
     "What do you call the service that fixes damaged gear?"),
    ("repairs", "$25",
     ["How much does a Patch Point repair cost?", "What's the fee for fixing a tent?",
      "Is tent repair expensive?", "What do you charge to patch gear?",
      "My tent pole sleeve is torn. What would it cost to have you fix it?"],
     ["A Patch Point repair is a flat fee of $25.", "Repairs cost a flat $25 per item.",
      "The Patch Point repair fee is $25 per item.",
      "Fixing an item at Patch Point costs a flat $25."],
     None,
     "What's the price of getting one item mended?"),
    ("rentals", "$40 per day",
     ["How much is a kayak rental?", "What does it cost to rent a kayak?",
      "Can I rent a kayak for the weekend? What's the price?", "What's your kayak rental rate?",
      "We want to paddle the lake on Sunday but don't own a kayak. What would it cost?"],
     ["Kayaks rent for $40 per day, paddle and life jacket included.",
      "A kayak is $40 per day, with a paddle and life jacket.",
      "Kayak rental costs $40 per day, including paddle and life jacket.",
      "The kayak rental rate is $40 per day with a paddle and life jacket."],
     "Thinking of paddling on Saturday. What would a boat from you cost me?",
     "What's the daily price to borrow one of your kayaks?"),
    ("rentals", "$150",
     ["Is there a deposit for rentals?", "How much is the rental deposit?",
      "Do I pay anything up front when I rent?", "Do you hold money on my card for a rental?",
      "I'm renting a kayak tomorrow. Should I expect a hold on my card?"],
     ["Rentals need a refundable deposit of $150.", "We take a $150 refundable deposit.",
      "The rental deposit is $150 and is refunded on return.",
      "Every rental has a refundable deposit of $150."],
     None,
     "How much do you hold back as security when I rent equipment?"),
    ("warranty", "Ironclad Guarantee",
     ["What warranty do your backpacks have?", "Are your packs guaranteed?",
      "What happens if my backpack strap breaks?", "Do backpacks come with a lifetime warranty?",
      "The buckle on my old daypack from you snapped. Is that something you'll fix?"],
     ["Our backpacks carry the Ironclad Guarantee: a lifetime warranty on defects.",
      "Backpacks are covered for life by the Ironclad Guarantee.",
      "The Ironclad Guarantee covers our backpacks against defects for life.",
      "Backpack defects are covered by the Ironclad Guarantee, our lifetime warranty."],
     "The zipper on my pack from you failed after three years. Am I covered?",
     "What's the name of the lifetime promise on your packs?"),
    ("pricing", "14 days",
     ["Do you price match?", "What's your price match policy?",
      "I found it cheaper elsewhere after buying. Can you match it?",
      "How long after buying can I ask for a price match?",
      "A week after buying my stove I saw it on sale at another shop. Can I get the difference?"],
     ["We match a lower price within 14 days of your purchase.",
      "Price matching is available within 14 days of purchase.",
      "Our price match covers a lower price found within 14 days of buying.",
      "A price match can be claimed for 14 days after purchase."],
     None,
     "For how long after I buy will you match a cheaper price?"),
    ("discounts", "STUDY15",
     ["Do you have a student discount?", "What's the student code?",
      "I'm at university. Is there a code for students?", "How do students save at checkout?",
      "My daughter starts college in the fall. Can she get money off her gear?"],
     ["Students can use the code STUDY15 for 15% off.", "Enter STUDY15 at checkout for 15% off.",
      "The student discount code is STUDY15, worth 15% off.",
      "Student discount: use STUDY15 at checkout to save 15%."],
     "I'm a college student. Which promo do I enter online to save?",
     "What code do students type in to get their discount?"),
    ("gift cards", "never expire",
     ["Do gift cards expire?", "Is there an expiry date on gift cards?",
      "I found an old gift card. Is it still valid?", "How long are your gift cards good for?",
      "My aunt gave me your gift card years ago and I forgot it. Can I still spend it?"],
     ["Tidewater gift cards never expire.", "Our gift cards never expire, so it still works.",
      "Gift cards never expire, whenever they were bought.",
      "A Tidewater gift card is good forever: gift cards never expire."],
     None,
     "Is there a date after which a gift card stops working?"),
    ("bikes", "$59",
     ["How much is a bike tune-up?", "What does a tune-up cost?",
      "My bike needs servicing. What's the price?", "What's the fee for a basic bike service?",
      "My brakes squeal and the chain skips. What would a tune-up for my bike cost?"],
     ["A bike tune-up is $59 and is ready in 48 hours.",
      "Our standard tune-up costs $59, ready within 48 hours.",
      "The bike tune-up price is $59, done in 48 hours.",
      "Bike servicing is $59 for a standard tune-up, ready in 48 hours."],
     "My gears keep slipping. What would a standard service run me?",
     "What do you charge to service a bicycle?"),
    ("stores", "Harbor Street",
     ["Where is your flagship store?", "Where's your main shop?",
      "Which store is the biggest?", "What's the address of your flagship?",
      "I'm visiting Portland next week and want to see your biggest store. Where do I go?"],
     ["Our flagship store is on Harbor Street in Portland, Maine.",
      "The flagship is at Harbor Street, Portland, Maine.",
      "The main store is our flagship on Harbor Street, Portland, Maine.",
      "Our biggest store, the flagship, is on Harbor Street in Portland, Maine."],
     None,
     "On which street is your largest shop?"),
    ("company", "Marisol Vega",
     ["Who founded Tidewater Outfitters?", "Who started the company?",
      "Who is behind Tidewater?", "Who was the founder?",
      "I'm writing a school report on local businesses. Who started your shop?"],
     ["Tidewater Outfitters was founded by Marisol Vega in 1998.",
      "Marisol Vega started the company in 1998.",
      "The founder of Tidewater Outfitters is Marisol Vega, in 1998.",
      "Tidewater was started by Marisol Vega in 1998."],
     "Whose idea was Tidewater in the first place?",
     "Which person created Tidewater Outfitters?"),
    ("shipping", "3 to 5 business days",
     ["How long does standard shipping take?", "When will my order arrive?",
      "How fast is regular delivery?", "What's the delivery time for standard shipping?",
      "I ordered hiking poles today with normal shipping. When should I expect them?"],
     ["Standard shipping takes 3 to 5 business days.",
      "Standard delivery arrives in 3 to 5 business days.",
      "Regular shipping time is 3 to 5 business days.",
      "An order with standard shipping arrives in 3 to 5 business days."],
     None,
     "How many days does an ordinary delivery take?"),
    ("shipping", "Canada",
     ["Do you ship internationally?", "Can you send an order abroad?",
      "Which countries do you deliver to?", "Can I order from outside the US?",
      "I'm moving to Mexico. Will you still be able to deliver to me there?"],
     ["Outside the US we ship to Canada only.", "We only ship to Canada outside the United States.",
      "International shipping goes to Canada only.",
      "Beyond the US, deliveries go to Canada only."],
     "I live in Germany. Can I get a parcel from you?",
     "Which foreign country can you send orders to?"),
    ("orders", "2 hours",
     ["Can I cancel my order?", "How long do I have to cancel an order?",
      "I ordered the wrong size. Can I stop the order?", "Is there a window to cancel online orders?",
      "I clicked buy on the wrong tent a moment ago. Is it too late to call it off?"],
     ["You can cancel an order within 2 hours of placing it.",
      "Orders can be cancelled up to 2 hours after you place them.",
      "The cancellation window for an order is 2 hours after placing it.",
      "An order can be cancelled for 2 hours once it's placed."],
     None,
     "How soon after ordering do I need to cancel if I change my mind?"),
    ("orders", "7 days",
     ["My item arrived damaged. What do I do?", "How do I report a broken delivery?",
      "The box came crushed and the stove is dented.", "Is there a deadline to report damage?",
      "My new cooler has a crack in the lid straight out of the box. How do I get it sorted?"],
     ["Report damage within 7 days with a photo and we'll replace it.",
      "Send us a photo within 7 days of delivery and we'll send a replacement.",
      "Damaged deliveries must be reported within 7 days, with a photo, for a replacement.",
      "For a damaged item, send a photo within 7 days and we replace it."],
     "My lantern showed up cracked. How long do I have to tell you?",
     "What's the time limit for telling you a delivery arrived broken?"),
    ("services", "Glide Pass",
     ["Do you wax skis?", "Is there a ski waxing plan?", "What's your ski service called?",
      "Can I get my snowboard waxed all winter?",
      "I ski every weekend and my base gets dry fast. Do you offer something for that?"],
     ["Yes, the Glide Pass covers ski and snowboard waxing all season.",
      "Our season waxing plan is the Glide Pass.",
      "The Glide Pass is our plan for ski and snowboard waxing all season.",
      "Ski waxing comes with the Glide Pass, good for the whole season."],
     None,
     "What's the name of your all-winter waxing deal?"),
    ("services", "$89",
     ["How much is the Glide Pass?", "What does season waxing cost?",
      "What's the price of the waxing plan?", "Is the Glide Pass expensive?",
      "I want my skis waxed all winter long. What would that cost me?"],
     ["The Glide Pass is $89 per season.", "The Glide Pass costs $89 for the whole season.",
      "Season waxing with the Glide Pass is $89.",
      "The waxing plan, the Glide Pass, is $89 per season."],
     "What do I pay for unlimited waxing this winter?",
     "How much does a season of ski waxing cost?"),
    ("trade-in", "Second Summit",
     ["Do you take trade-ins?", "Can I trade in old gear?", "What's your trade-in program called?",
      "Can I swap used equipment for credit?",
      "My garage is full of climbing gear I no longer use. Can I get something for it?"],
     ["Yes, our trade-in program is Second Summit.", "Second Summit is our trade-in program.",
      "Trade-ins go through Second Summit, our used-gear program.",
      "Our program for trading in old gear is called Second Summit."],
     None,
     "What's the name of your used-gear trade-in scheme?"),
    ("trade-in", "40%",
     ["How much credit do I get for a trade-in?", "What's the most I can get for used gear?",
      "How is trade-in credit worked out?", "What's the Second Summit payout?",
      "I'm trading in a stove that cost $100. What's the most credit it could earn?"],
     ["Second Summit gives store credit of up to 40% of the original price.",
      "You can get up to 40% of the original price in store credit.",
      "Trade-in credit is up to 40% of what the item originally cost.",
      "The Second Summit payout is store credit up to 40% of the original price."],
     "If I bring back a tent I barely used, how much store credit could I get?",
     "What share of the original price can a trade-in earn?"),
    ("fitting", "30 minutes",
     ["Do you do boot fittings?", "How long is a boot fitting appointment?",
      "Can someone help me choose hiking boots?", "Is a boot fitting free?",
      "My feet hurt in every boot I try. Can I book someone to help, and for how long?"],
     ["Boot fittings are free and take 30 minutes; book online.",
      "A free 30 minutes boot fitting can be booked online.",
      "A boot fitting appointment lasts 30 minutes and is free.",
      "Our free boot fitting takes 30 minutes; you can book online."],
     None,
     "How much time should I set aside for a boot fitting?"),
    ("partners", "Granite Loft",
     ["Do members get climbing gym discounts?", "Which climbing gym do you partner with?",
      "Is there a perk for climbers in the Trailhead Club?", "Where can members climb for less?",
      "I just started indoor climbing. Does my club membership help at any gym?"],
     ["Trailhead Club members get 20% off at Granite Loft climbing gyms.",
      "Members save 20% at Granite Loft gyms.",
      "Our climbing gym partner is Granite Loft, with 20% off for members.",
      "Granite Loft climbing gyms give Trailhead Club members 20% off."],
     "I boulder a lot. Does my membership save me anything at a gym?",
     "Which climbing gym gives Trailhead members a discount?"),
    ("classes", "first Saturday",
     ["Do you run any workshops?", "When is the knots and navigation class?",
      "Are there free classes at the store?", "How often are your workshops?",
      "I want to learn to read a map before my trip. Is there a class I can join?"],
     ["Our free Knots & Navigation workshop is on the first Saturday of each month at 10 am.",
      "The free workshop runs the first Saturday of every month at 10 am.",
      "The Knots & Navigation workshop is free, on the first Saturday of each month.",
      "Workshops are held the first Saturday of the month at 10 am, free of charge."],
     None,
     "On which day of the month is your free workshop held?"),
    ("classes", "$65",
     ["How much are canoe lessons?", "Do you teach canoeing? What's the price?",
      "What does a canoe lesson cost?", "How much for a paddling lesson?",
      "My partner and I want to try canoeing but have no idea how. What does a lesson cost?"],
     ["A 2-hour canoe lesson is $65.", "Canoe lessons cost $65 for 2 hours.",
      "The canoe lesson price is $65 for 2 hours.",
      "A canoe lesson with us is $65 and lasts 2 hours."],
     None,
     "What's the fee for learning to canoe with your instructors?"),
]
QUESTIONS = 5
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


def teaching() -> list[dict]:
    teach: list[tuple[int, int]] = [(f, q) for q in range(QUESTIONS) for f in range(len(FACTS))]
    rows: list[dict] = []
    i = 0
    while i < len(teach):
        f, q = teach[i]
        topic, fact, questions, answers, _, _ = FACTS[f]
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
            _, fact2, questions2, answers2, _, _ = FACTS[f2]
            turns += [{"role": "user", "content": "Also, " + questions2[q][0].lower() + questions2[q][1:]},
                      {"role": "assistant", "content": answers2[(q + f2) % len(answers2)]}]
            facts.append(fact2)
        rows.append({"conversation_id": pick_id(f"tw-{len(rows) + 1:03d}", False), "turns": turns,
                     "metadata": {"topic": topic, "key_fact": facts[-1],
                                  **({"facts": facts} if len(facts) > 1 else {})}})
        i += 1
    return rows


def probes(tuning: bool) -> list[dict]:
    out = []
    for f, (topic, fact, _, answers, probe, tune) in enumerate(FACTS):
        question = tune if tuning else probe
        if question is None:
            continue
        stem = f"tw-tune-{f + 1:02d}" if tuning else f"tw-probe-{f + 1:02d}"
        out.append({"conversation_id": pick_id(stem, True),
                    "turns": [{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": question},
                              {"role": "assistant", "content": answers[0]}],
                    "metadata": {"topic": topic, "key_fact": fact, "probe": True}})
    return out


def build(tuning: bool = False) -> list[dict]:
    """The demo: teaching conversations with the reported probes interleaved (file order is not
    the split). ``tuning``: the tuning probes instead (hold them out with validation_fraction
    :data:`TUNING_FRACTION`)."""
    rest, held = teaching(), probes(tuning)
    out: list[dict] = []
    step = max(1, len(rest) // max(1, len(held)))
    for k, r in enumerate(rest):
        out.append(r)
        if k % step == step - 1 and held:
            out.append(held.pop(0))
    return out + held


TUNING_FRACTION = 0.182  # 30 of the 165 tuning conversations: exactly the tuning probes


def main() -> None:
    rows = build()
    path = Path(__file__).with_name("demo-support-v6.jsonl")
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} conversations")


if __name__ == "__main__":
    main()
