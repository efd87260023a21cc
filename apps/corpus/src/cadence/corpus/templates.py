"""More English sentences than anyone would write by hand: seeded templates over word lists.

The 240 hand-written sentences of :mod:`cadence.corpus.texts` cover English phonemes and
intonation; a corpus of an hour or more needs thousands of distinct sentences, so that a
model hears new word sequences and a held-out set can hold sentences no model saw. The
templates mix statements, questions and exclamations, numbers and times, names and places,
and draw every slot from a seeded generator, so the list is the same on every machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["template_sentences"]

_NAMES = (
    "Anna",
    "Boris",
    "Clara",
    "David",
    "Elena",
    "Felix",
    "Grace",
    "Hugo",
    "Irene",
    "James",
    "Keiko",
    "Liam",
    "Maria",
    "Nathan",
    "Olga",
    "Peter",
    "Quinn",
    "Rosa",
    "Samuel",
    "Tara",
    "Victor",
    "Wendy",
    "Xavier",
    "Yusuf",
    "Zoe",
    "Martin",
    "Sophie",
    "Oscar",
    "Priya",
    "Leon",
)
_PEOPLE = (
    "the old farmer",
    "my sister",
    "our neighbour",
    "the young doctor",
    "a tired sailor",
    "the new teacher",
    "his grandmother",
    "the baker",
    "a quiet student",
    "the mayor",
    "their cousin",
    "the night nurse",
    "a clever engineer",
    "the shy painter",
    "my uncle",
    "the tour guide",
    "a busy lawyer",
    "the gardener",
    "the fisherman",
    "her brother",
)
_VERBS = (
    "painted",
    "carried",
    "borrowed",
    "repaired",
    "found",
    "sold",
    "cleaned",
    "wrapped",
    "measured",
    "polished",
    "dropped",
    "bought",
    "hid",
    "moved",
    "checked",
    "described",
    "opened",
    "lifted",
    "followed",
    "counted",
    "photographed",
    "returned",
    "wanted",
    "ordered",
)
_THINGS = (
    "a red bicycle",
    "the wooden chair",
    "three yellow lamps",
    "an old violin",
    "the heavy box",
    "a silver spoon",
    "the broken window",
    "two green bottles",
    "a map of the city",
    "the garden gate",
    "a small brown dog",
    "the kitchen clock",
    "a pair of boots",
    "the blue umbrella",
    "a basket of plums",
    "the leather jacket",
    "a jar of honey",
    "the printed letters",
    "a strange machine",
    "the velvet curtains",
    "a bag of oranges",
    "the copper kettle",
    "a thick notebook",
    "the stone statue",
)
_PLACES = (
    "near the harbour",
    "behind the station",
    "in the attic",
    "at the market",
    "under the bridge",
    "by the lake",
    "in the library",
    "outside the bakery",
    "on the third floor",
    "across the valley",
    "in the village square",
    "beside the river",
    "at the airport",
    "in the old mill",
    "on the mountain road",
    "inside the museum",
)
_TIMES = (
    "on Monday morning",
    "last winter",
    "yesterday evening",
    "at half past seven",
    "before sunrise",
    "after lunch",
    "on a rainy Tuesday",
    "in early spring",
    "at midnight",
    "three weeks ago",
    "during the storm",
    "every Sunday",
    "at ten o'clock",
    "in August",
)
_ADVERBS = (
    "slowly",
    "carefully",
    "quickly",
    "quietly",
    "happily",
    "nervously",
    "proudly",
    "gently",
)
_FEELINGS = (
    "surprised",
    "delighted",
    "worried",
    "puzzled",
    "relieved",
    "curious",
    "annoyed",
    "calm",
)
_NUMBERS = (
    "seven",
    "twelve",
    "nineteen",
    "twenty-three",
    "forty",
    "fifty-six",
    "eighty-one",
    "a hundred",
    "two hundred and five",
    "one thousand",
)
_PLURALS = (
    "boats",
    "letters",
    "apples",
    "chairs",
    "birds",
    "coins",
    "stairs",
    "tickets",
    "trees",
    "candles",
    "stones",
    "windows",
)

_TEMPLATES = (
    "{Who} {verb} {thing} {place}.",
    "{Who} {verb} {thing} {time}.",
    "{Time}, {who} {adverb} {verb} {thing}.",
    "Did {who} really find {thing} {place}?",
    "Why did {who} leave {thing} {place}?",
    "Where is {thing} that {who} {verb}?",
    "{Who} was {feeling} to see {thing} {place}.",
    "{Who} counted {number} {plural} {place}.",
    "I think {who} {verb} {thing} {time}.",
    "We met {who} {place} {time}.",
    "How many {plural} did {who} see {place}?",
    "What a surprise, {who} {verb} {thing}!",
    "{Who} said that {thing} was {place}.",
    "Please tell {who} to bring {thing}.",
    "{Who} and {other} {verb} {thing} together.",
    "Nobody knew why {who} {verb} {thing} {time}.",
)


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def template_sentences(count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct sentences from the templates, in a seeded order.

    Raises:
        ValueError: ``count`` is negative or more than the templates can make distinct
            (far more than any corpus here needs).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng([seed, 0x7E3])
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise ValueError(f"cannot make {count} distinct template sentences; ask for fewer")
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        who, other = (_pick_person(rng) for _ in range(2))
        slots = {
            "who": who,
            "other": other,
            "verb": _choice(rng, _VERBS),
            "thing": _choice(rng, _THINGS),
            "place": _choice(rng, _PLACES),
            "time": _choice(rng, _TIMES),
            "adverb": _choice(rng, _ADVERBS),
            "feeling": _choice(rng, _FEELINGS),
            "number": _choice(rng, _NUMBERS),
            "plural": _choice(rng, _PLURALS),
        }
        slots |= {key.capitalize(): _capitalize(value) for key, value in slots.items()}
        sentence = template.format(**slots)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _pick_person(rng: np.random.Generator) -> str:
    # Names and descriptions in equal measure: names carry rare phoneme sequences.
    return _choice(rng, _NAMES) if rng.random() < 0.5 else _choice(rng, _PEOPLE)
