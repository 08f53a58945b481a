"""Generate the fact-set of issue 23's acceptance 2 (our stand-in for the reviewer's set): one
invented bike-rental company, Lanternfly Bikes of Port Alder, with 18 specific facts (prices, plan
and promo codes, hours, a phone number, names, policies, durations), in OpenAI chat format.

- ``factset-openai-train.jsonl``: 90 conversations, each fact taught by 5 differently worded
  questions whose answers all state the fact's key fact verbatim; 6 of them are two-exchange
  conversations (a greeting exchange first; the last answer states the fact).
- ``factset-openai-heldout.jsonl``: 18 conversations, one per fact (in fact order), asking it in
  words none of its 5 training questions uses; the reference answer states the key fact.

Every line is ``{"messages": [system, user, assistant, ...], "metadata": {"key_fact": ...,
"fact": ...}}`` with the same system prompt. ``metadata.key_fact`` is what the product scores
(``backend/training/scoring.contains_fact``: the key fact's normalised words as a whole-word run
in the normalised answer); no key fact is found in an answer about another fact.

Run: ``python examples/make_factset.py`` (deterministic: the training lines are shuffled with a
fixed seed; standard library only; writes next to this file).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = ("You are Juno, the support assistant of Lanternfly Bikes, a bike-rental company in "
          "Port Alder. Answer briefly and exactly.")
SEED = 23
TRAIN_NAME = "factset-openai-train.jsonl"
HELDOUT_NAME = "factset-openai-heldout.jsonl"

# (fact id, key fact, 5 training questions, held-out question, training answers (cycled),
#  held-out reference answer)
FACTS = [
    ("day-pass-price", "$18.50",
     ["How much is a day pass?", "What does a one-day pass cost?",
      "What's the price of riding for a whole day?", "Is a day pass expensive?",
      "How much do I pay for 24 hours of bike access?"],
     "I only need a bike for Saturday. What would unlimited riding that day set me back?",
     ["A day pass costs $18.50.", "The day pass is $18.50 for 24 hours of riding.",
      "It's $18.50 for a day pass."],
     "That's our day pass: $18.50 for unlimited rides over 24 hours."),
    ("membership-code", "RIDE-M30",
     ["What's the code of the monthly membership?", "What is the monthly plan called?",
      "Which plan do I pick for a monthly membership?", "What's the name of your monthly plan?",
      "How do I find the monthly membership in the app?"],
     "I ride to work every day. Which plan should I choose when I sign up for a month?",
     ["The monthly membership is plan RIDE-M30.", "Choose plan RIDE-M30, our monthly membership.",
      "Look for RIDE-M30; that's the monthly plan."],
     "For daily commuting, pick the monthly membership, plan RIDE-M30."),
    ("membership-price", "$29.99",
     ["How much is the monthly membership?", "What does the RIDE-M30 plan cost?",
      "What's the monthly fee?", "How much do members pay each month?",
      "Is the membership cheaper than day passes?"],
     "If I subscribe, what gets charged to my card every month?",
     ["The monthly membership is $29.99 a month.", "Members pay $29.99 each month.",
      "It costs $29.99 per month."],
     "A membership is billed at $29.99 every month."),
    ("ebike-rate", "35 cents",
     ["Do e-bikes cost extra?", "What's the e-bike surcharge?",
      "How much more is an electric bike?", "Is there a per-minute fee for e-bikes?",
      "What do you charge for using an e-bike?"],
     "Are the bikes with a motor priced differently from the regular ones?",
     ["E-bikes cost an extra 35 cents per minute.", "The e-bike surcharge is 35 cents a minute.",
      "Electric bikes add 35 cents per minute."],
     "Yes, riding an e-bike adds 35 cents per minute to the usual price."),
    ("phone", "1-877-555-0163",
     ["What's your phone number?", "How can I call customer support?",
      "Is there a number I can ring?", "What number do I dial for help?",
      "Can I reach you by phone?"],
     "My bike broke down on the road and I want to talk to a person. Who do I call?",
     ["You can call us at 1-877-555-0163.", "Our support line is 1-877-555-0163.",
      "Ring 1-877-555-0163 to reach support."],
     "Please call our support line at 1-877-555-0163."),
    ("hours", "6 am to 11 pm",
     ["What are your support hours?", "When is the help line open?",
      "Can I call you late in the evening?", "What time does support open?",
      "Are you open on weekends?"],
     "If I phone you at ten at night, will anyone pick up?",
     ["Support is open from 6 am to 11 pm, every day.",
      "We answer from 6 am to 11 pm, seven days a week.",
      "Our help line runs 6 am to 11 pm daily."],
     "Yes, our help line is staffed from 6 am to 11 pm every day."),
    ("late-fee", "$7 per extra hour",
     ["What happens if I return a bike late?", "Is there a late fee?",
      "How much do you charge for a late return?", "I'm running late with my rental. Will it cost me?",
      "What's the penalty for keeping a bike past my booking?"],
     "My booking ended at noon but I'll be back around two. What will that add?",
     ["Late returns cost $7 per extra hour.", "We charge $7 per extra hour after your booking ends.",
      "The late fee is $7 per extra hour."],
     "Keeping the bike longer is charged at $7 per extra hour."),
    ("ride-limit", "45 minutes",
     ["How long can each ride be on a day pass?", "Is there a time limit per ride?",
      "Can I keep one bike all day on a pass?", "How long is one included ride?",
      "Do rides on a pass have a maximum length?"],
     "On a pass, how long am I allowed to stay on one bike before I have to dock it?",
     ["Each ride on a pass can last up to 45 minutes.",
      "Rides are included for up to 45 minutes each.",
      "Every included ride is up to 45 minutes; dock and undock to start another."],
     "You can ride up to 45 minutes at a time before docking."),
    ("deposit", "$120",
     ["Is there a deposit for multi-day rentals?", "How much is the rental deposit?",
      "Do you hold money on my card for a weekly rental?", "What deposit do I pay for a touring bike?",
      "Do I pay anything up front for a long rental?"],
     "I'm renting a bike for five days. Will you put a hold on my card, and how much?",
     ["Multi-day rentals need a refundable $120 deposit.",
      "We hold a refundable $120 deposit on your card.",
      "There's a $120 deposit, refunded when the bike comes back."],
     "Yes, multi-day rentals place a refundable $120 hold on your card."),
    ("app", "PedalPass",
     ["Do you have an app?", "What is your app called?",
      "How do I unlock a bike with my phone?", "Which app do I download to ride?",
      "Where do I manage my rentals?"],
     "Is there something I can install on my phone to get a bike going?",
     ["Yes, our app is PedalPass; it unlocks bikes and manages rentals.",
      "Download the PedalPass app to unlock a bike.", "Everything runs in the PedalPass app."],
     "Install the PedalPass app and use it to unlock any bike."),
    ("depot", "Ferrier Wharf",
     ["Where is your main depot?", "Where can I pick up a touring bike?",
      "Where's your biggest location?", "What's the address of your service centre?",
      "Where do I bring a bike for repairs?"],
     "Which of your sites is the flagship?",
     ["Our main depot is at Ferrier Wharf in Port Alder.",
      "Go to the Ferrier Wharf depot.", "The main depot and service centre are at Ferrier Wharf."],
     "Our flagship is the depot at Ferrier Wharf, Port Alder."),
    ("minimum-age", "16 years old",
     ["How old do I need to be to rent?", "Is there a minimum age?",
      "Can my teenager rent a bike alone?", "What's the age limit for renting?",
      "Can kids rent bikes?"],
     "My son is fourteen. Could he take out a bike on his own account?",
     ["Riders must be 16 years old to rent on their own.",
      "You need to be 16 years old to rent without an adult.",
      "The minimum age is 16 years old."],
     "Not yet: riders must be 16 years old to rent alone."),
    ("student-code", "CAMPUS20",
     ["Do you have a student discount?", "What's the student code?",
      "I'm at university. Is there a code for me?", "How do students save?",
      "Is there a promo code for students?"],
     "I'm doing a degree at the college. Which code gives me a lower price?",
     ["Students can use the code CAMPUS20 for 20% off.",
      "Enter CAMPUS20 at checkout for the student discount.",
      "The student code is CAMPUS20."],
     "Use the student code CAMPUS20 for 20% off."),
    ("cancellation", "90 minutes before",
     ["Can I cancel a reservation?", "What's your cancellation policy?",
      "Until when can I cancel for free?", "Do I get a refund if I cancel my booking?",
      "How late can I cancel a booking?"],
     "Something came up this afternoon. Up to what point can I call off my booking without paying?",
     ["Reservations can be cancelled for free up to 90 minutes before the start.",
      "Cancel up to 90 minutes before pickup for a full refund.",
      "Free cancellation ends 90 minutes before your booking starts."],
     "You can cancel free of charge up to 90 minutes before the booking starts."),
    ("group-tours", "6 or more riders",
     ["Do you offer guided group rides?", "Can we get a guide for our group?",
      "Is there a group booking?", "How big does a group need to be for a guided tour?",
      "Do you do tours for teams?"],
     "We're a bunch of colleagues planning an outing. Can you send someone to lead us?",
     ["Guided group rides are available for 6 or more riders.",
      "We provide a guide for groups of 6 or more riders.",
      "Group tours need 6 or more riders."],
     "Yes, we send a guide for groups of 6 or more riders."),
    ("tandem", "Twinline",
     ["Do you rent tandem bikes?", "What's your tandem called?",
      "Can two people ride one bike?", "Do you have bikes for couples?",
      "Which model is your two-seater?"],
     "My partner and I want to share a single bicycle. Have you got one built for two?",
     ["Yes, our tandem is the Twinline.", "The Twinline is our two-seat tandem.",
      "Ask for the Twinline, our tandem bike."],
     "Yes, rent the Twinline, our tandem for two riders."),
    ("ebike-range", "60 km",
     ["How far can an e-bike go on one charge?", "What's the e-bike range?",
      "Will the battery last a long ride?", "How long does an e-bike battery last?",
      "Can I ride an e-bike all day without charging?"],
     "I'm planning a long trip on an electric bike. How much distance before it runs flat?",
     ["Our e-bikes go about 60 km on a full charge.", "The range is about 60 km per charge.",
      "A full battery lasts about 60 km."],
     "On a full charge our e-bikes cover about 60 km."),
    ("damage-cover", "Crashpad",
     ["Do you offer damage protection?", "Is there insurance for rentals?",
      "What if I damage the bike?", "What's your protection add-on called?",
      "Can I add cover to my rental?"],
     "I'm worried about scratching the frame. Can I pay for something that covers that?",
     ["Yes, add Crashpad cover to your rental for damage protection.",
      "Our damage protection add-on is Crashpad.", "Crashpad cover protects you against damage."],
     "Yes, the Crashpad add-on covers damage to the bike."),
]
GREETINGS = [("Hi Juno!", "Hi! How can I help you today?"),
             ("Hello, I have a question.", "Of course. What would you like to know?"),
             ("Hey there.", "Hello! What can I do for you?")]
MULTI_TURN = {0: 1, 3: 2, 6: 3, 9: 1, 12: 4, 15: 2}  # fact index -> question with a greeting first


def conversation(turns: list[tuple[str, str]], key_fact: str, fact: str) -> dict:
    messages = [{"role": "system", "content": SYSTEM}]
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages, "metadata": {"key_fact": key_fact, "fact": fact}}


def build() -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows)."""
    train: list[dict] = []
    heldout: list[dict] = []
    for f, (fact, key, questions, probe, answers, reference) in enumerate(FACTS):
        for q, question in enumerate(questions):
            turns = [(question, answers[(q + f) % len(answers)])]
            if MULTI_TURN.get(f) == q:
                turns.insert(0, GREETINGS[f % len(GREETINGS)])
            train.append(conversation(turns, key, fact))
        heldout.append(conversation([(probe, reference)], key, fact))
    random.Random(SEED).shuffle(train)
    return train, heldout


def write(rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(folder: Path | None = None) -> None:
    folder = folder or Path(__file__).resolve().parent
    train, heldout = build()
    write(train, folder / TRAIN_NAME)
    write(heldout, folder / HELDOUT_NAME)
    print(f"{folder / TRAIN_NAME}: {len(train)} conversations; "
          f"{folder / HELDOUT_NAME}: {len(heldout)} conversations")


if __name__ == "__main__":
    main()
