"""The words grounding reads: kinds of device, fillers, and when two words match.

The kinds and fillers are English; in other languages only the entities' own
names, areas and floors are matched (with the same tolerance for endings and
typos).
"""

from __future__ import annotations

import difflib

# Words that name a kind of device (English), and the domain they mean.
DOMAIN_WORDS = {
    "light": "light",
    "lamp": "light",
    "bulb": "light",
    "switch": "switch",
    "plug": "switch",
    "socket": "switch",
    "outlet": "switch",
    "fan": "fan",
    "blind": "cover",
    "shade": "cover",
    "curtain": "cover",
    "shutter": "cover",
    "cover": "cover",
    "lock": "lock",
    "thermostat": "climate",
    "heating": "climate",
    "tv": "media_player",
    "television": "media_player",
    "speaker": "media_player",
    "music": "media_player",
    "player": "media_player",
    "sensor": "sensor",
}
# Kind words that are a cover's device class too ("close the blinds", not the door).
DEVICE_CLASSES = {w: w for w in ("blind", "shade", "curtain", "shutter")}
# Words that never name a device: articles, pronouns, states, fillers.
FILLER_WORDS = (
    "a an the my our your please in on off of at to for from all every each and"
    " is are was were it its that this them those these one ones again same other"
    " another what what's whats how how's tell me can could would will you up down"
    " now right here there currently state status open closed locked unlocked"
    " playing paused running still do does did has have any anything know i i'm"
    " we be percent degrees degree minutes minute seconds hours brightness volume"
    " everything"
)
FILLERS = frozenset(FILLER_WORDS.split())
# Words that never choose a tool: articles, pronouns and the like. Unlike FILLERS,
# "volume", "percent", "on" and "off" stay: they say what to do.
GLUE_WORDS_TEXT = (
    "a an the my our your please to of in at for from and it its is are me you can"
    " could would will i"
)
GLUE_WORDS = frozenset(GLUE_WORDS_TEXT.split())
# Two words people use for one place, thing or action ("outside" for "Outdoor").
_SAME_AS = {
    "outside": "outdoor",
    "outdoors": "outdoor",
    "inside": "indoor",
    "put": "add",
}
MIN_SIMILARITY = 0.8


def stem(word: str) -> str:
    """Return the word without a plural's "s" (lights, light)."""
    return word.removesuffix("s") if len(word) > 3 else word


def related(word: str, other: str) -> bool:
    """Return True when two words are one, up to a plural or an ending (no typos)."""
    word, other = _SAME_AS.get(word, word), _SAME_AS.get(other, other)
    if word == other or stem(word) == stem(other):
        return True
    short = min(len(word), len(other))
    # "humid" for "humidity", "percent" for "percentage"
    return short >= 5 and (word.startswith(other) or other.startswith(word))


def similar(word: str, other: str) -> bool:
    """Return True when two words are the same, up to a plural, an ending or a typo."""
    return related(word, other) or (
        min(len(word), len(other)) >= 4
        and difflib.SequenceMatcher(None, word, other).ratio() >= MIN_SIMILARITY
    )


def domain_of(word: str) -> str | None:
    """Return the domain a kind word means ("lamps": light), if it names one."""
    return DOMAIN_WORDS.get(stem(word))
