"""Exports with facts about the user planted at known places, and a manifest that says where.

    python -m bench.planted --size-mb 10 --out bench/out/planted-10mb.json [--seed 7]

writes the export and `<out>.manifest.json` beside it. One user a seed: a name, a city, a partner,
work, a pet, dated deadlines and events, preferences and beliefs, each written as one sentence
in a user message of a ChatGPT-format conversation. The rest is `bench.make_export`'s filler.
About half of the facts are stated once, in the first or second user message of a long
conversation (25–40 turns): the case per-chunk extraction sees once, with context that
packing might dilute. The others are stated once or twice, anywhere in ordinary conversations.
Each fact has two phrasings, one of them picked by the seed: a plain first-person one ("I live
in Porto.") and a looser one ("I moved to Porto a few years ago…"), as people write.

The manifest lists, per fact: its kind, the sentence planted, where (conversation id, index of
the user message on the active path, the conversation's turns), how often it is stated, the
MEMORY heading it belongs under, and `key_terms`: groups of alternatives, every group of which
must occur in one MEMORY line for the fact to count as recalled (`bench.quality_score`).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.make_export import generate_conversation

__all__ = ["PlantedFact", "date_forms", "plant_sentence", "write_planted_export"]

_MONTHS = [date(2000, m, 1).strftime("%B") for m in range(1, 13)]


@dataclass(frozen=True)
class PlantedFact:
    id: str
    kind: str
    statement: str
    key_terms: list[list[str]]
    heading: str
    conversation_ids: list[str]
    message_indexes: list[int]
    conversation_turns: list[int]
    placement: str  # "early in a long conversation" | "anywhere"


def date_forms(day: date) -> list[str]:
    """The ways a MEMORY line may write `day`."""
    month = _MONTHS[day.month - 1]
    return [
        f"{day.day} {month} {day.year}",
        f"{month} {day.day}, {day.year}",
        f"{month} {day.day} {day.year}",
        f"{day.day} {month[:3]} {day.year}",
        f"{month[:3]} {day.day}, {day.year}",
        day.isoformat(),
        f"{day.day:02d}/{day.month:02d}/{day.year}",
    ]


_PEOPLE = [
    ("Maya", "Okafor"), ("Jonas", "Lindqvist"), ("Priya", "Raman"), ("Daniel", "Mensah"),
    ("Aiko", "Tanaka"), ("Sofia", "Marchetti"), ("Liam", "Byrne"), ("Nadia", "Haddad"),
]  # fmt: skip
_CITIES = ["Porto", "Leeds", "Tallinn", "Halifax", "Ghent", "Valencia", "Dunedin", "Bergen"]
_RELATIONS = ["wife", "husband", "partner", "girlfriend", "boyfriend"]
_JOBS = [
    ("landscape architect", "Studio Verde"), ("paediatric nurse", "St Mary's Hospital"),
    ("data engineer", "Northwind Logistics"), ("secondary school teacher", "Hillcrest Academy"),
    ("structural engineer", "Calder Partners"), ("pharmacist", "Boots"),
]  # fmt: skip
_PETS = [("dog", "Biscuit"), ("cat", "Miso"), ("tortoise", "Gordon"), ("rabbit", "Clover")]
_DEADLINES = ["grant report", "thesis draft", "tax return", "book manuscript", "visa application"]
_EVENTS = [
    ("my sister's wedding", ["wedding"]), ("the Berlin half marathon", ["half marathon"]),
    ("our move to Rotterdam", ["Rotterdam"]), ("my dad's 70th birthday party", ["70th"]),
]  # fmt: skip
_PREFERENCES = [
    (("I prefer answers as bullet points, not long paragraphs.",
      "Honestly bullet points work way better for me than long paragraphs."), [["bullet"]]),
    (("I hate coriander.", "Coriander ruins any dish for me, no exceptions."),
     [["coriander", "cilantro"]]),
    (("I love hiking in the mountains on weekends.",
      "Weekends are for hiking in the mountains, that's my thing."), [["hiking", "hikes"]]),
    (("I prefer tea over coffee.", "Tea over coffee any day, for me."), [["tea"]]),
]  # fmt: skip
_BELIEFS = [
    (("I believe public transport should be free for everyone.",
      "Public transport should be free for everyone, full stop."), [["public transport"]]),
    (("Honesty is really important to me, even when it's awkward.",
      "Being honest matters more to me than being liked."), [["honesty", "honest"]]),
    (("I believe everyone should learn to cook.",
      "Everyone should learn to cook, it's a life skill."), [["cook", "cooking"]]),
]  # fmt: skip


def _facts(rng: random.Random) -> list[tuple[str, str, list[list[str]], str]]:
    """(kind, statement, key_terms, heading) of one user, drawn from the pools."""
    first, last = rng.choice(_PEOPLE)
    partner = rng.choice([p for p in _PEOPLE if p[0] != first])[0]
    city, rel = rng.choice(_CITIES), rng.choice(_RELATIONS)
    job, employer = rng.choice(_JOBS)
    partner_job = rng.choice([j for j, _ in _JOBS if j != job])
    kind, pet = rng.choice(_PETS)
    pick = rng.randrange
    out: list[tuple[str, str, list[list[str]], str]] = [
        ("name", (f"My name is {first} {last}.", f"Hi, {first} here.")[pick(2)], [[first]],
         "About Me"),
        ("city", (f"I live in {city}.",
                  f"I moved to {city} a few years ago and I love it here.")[pick(2)], [[city]],
         "About Me"),
        ("partner", (f"My {rel} {partner} is a {partner_job}.",
                     f"{partner} and I have been together for six years.")[pick(2)],
         [[partner]], "People"),
        ("work", (f"I work as a {job} at {employer}.",
                  f"Day job: {job} at {employer}, mostly.")[pick(2)], [[job]], "About Me"),
        ("pet", (f"I have a {kind} called {pet}.",
                 f"My {kind} {pet} keeps stealing my socks.")[pick(2)], [[pet]], "People"),
    ]  # fmt: skip
    for thing in rng.sample(_DEADLINES, 2):
        day = date(2026, rng.randint(1, 12), rng.randint(1, 28))
        when = date_forms(day)[0]
        sentence = (f"My {thing} is due on {when}.", f"The deadline for my {thing} is {when}.")
        out.append(("deadline", sentence[pick(2)], [[thing], date_forms(day)], "Important Dates"))
    for event, event_terms in rng.sample(_EVENTS, 2):
        day = date(2025, rng.randint(1, 12), rng.randint(1, 28))
        when = date_forms(day)[0]
        sentence = (f"{event[0].upper()}{event[1:]} is on {when}.", f"Reminder: {event}, {when}.")
        out.append(("event", sentence[pick(2)], [event_terms, date_forms(day)], "Important Dates"))
    for statements, terms in rng.sample(_PREFERENCES, 3):
        out.append(("preference", statements[pick(2)], terms, "Preferences"))
    for statements, terms in rng.sample(_BELIEFS, 2):
        out.append(("belief", statements[pick(2)], terms, "Beliefs & Values"))
    return out


def _user_parts(conversation: dict[str, Any]) -> list[list[Any]]:
    """The `parts` lists of the user's text messages on the active path, in order."""
    mapping, node_id = conversation["mapping"], conversation["current_node"]
    found: list[list[Any]] = []
    while node_id in mapping:
        message = mapping[node_id]["message"]
        parts = (message or {}).get("content", {}).get("parts")
        if message and message["author"]["role"] == "user" and parts:
            found.append(parts)
        node_id = mapping[node_id]["parent"]
    return found[::-1]


def plant_sentence(conversation: dict[str, Any], index: int, sentence: str) -> None:
    """Put `sentence` at the start of the `index`-th user message on the active path."""
    parts = _user_parts(conversation)[index]
    at = next(i for i, p in enumerate(parts) if isinstance(p, str))
    parts[at] = f"{sentence} {parts[at]}"


def write_planted_export(out: Path, *, size_mb: float, seed: int = 7) -> Path:
    """Write the export (JSON) and its manifest (`<out>.manifest.json`); return the manifest."""
    rng = random.Random(seed)
    facts = _facts(rng)
    size = int(size_mb * 1024 * 1024)
    # Hosts among the conversations the size will hold (~25 KB each), one fact each at most.
    span = max(size // 25_000, 3 * len(facts))
    slots = iter(rng.sample(range(span), 2 * len(facts)))
    plan: dict[int, tuple[int, bool]] = {}  # conversation index → (fact, early in a long one)
    early = [rng.random() < 0.5 for _ in facts]
    for n in range(len(facts)):
        for _ in range(1 if early[n] or rng.random() < 0.5 else 2):
            plan[next(slots)] = (n, early[n])
    where: dict[int, list[tuple[str, int, int]]] = {n: [] for n in range(len(facts))}
    written, index = 0, 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as handle:
        handle.write("[")
        while written < size or index <= max(plan):
            host = plan.get(index)
            turns = rng.randint(25, 40) if host and host[1] else None
            conversation = generate_conversation(rng, index, turns=turns)
            if host:
                users = len(_user_parts(conversation))
                at = rng.randrange(min(2, users)) if host[1] else rng.randrange(users)
                plant_sentence(conversation, at, facts[host[0]][1])
                where[host[0]].append((conversation["id"], at, users))
            body = json.dumps(conversation)
            handle.write(("," if index else "") + body)
            written += len(body) + 1
            index += 1
        handle.write("]")
    planted = [
        PlantedFact(
            id=f"{kind}-{n}",
            kind=kind,
            statement=statement,
            key_terms=terms,
            heading=heading,
            conversation_ids=[w[0] for w in where[n]],
            message_indexes=[w[1] for w in where[n]],
            conversation_turns=[w[2] for w in where[n]],
            placement="early in a long conversation" if early[n] else "anywhere",
        )
        for n, (kind, statement, terms, heading) in enumerate(facts)
    ]
    manifest = out.with_name(out.name + ".manifest.json")
    manifest.write_text(
        json.dumps(
            {"export": out.name, "seed": seed, "facts": [asdict(f) for f in planted]}, indent=2
        )
    )
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    manifest = write_planted_export(args.out, size_mb=args.size_mb, seed=args.seed)
    print(f"{args.out}\t{args.out.stat().st_size} bytes\n{manifest}")


if __name__ == "__main__":
    main()
