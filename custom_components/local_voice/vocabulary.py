"""The words grounding reads: kinds of device, fillers, and when two words match.

The kinds and fillers are English; in other languages only the entities' own
names, areas and floors are matched (with the same tolerance for endings and
typos). Japanese and Chinese are written without spaces: what is said is read as
the home's own words found in it (segment), and hiragana as katakana, since
speech-to-text writes a name in either ("きちん" for "キッチン").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import difflib
import unicodedata

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
_HIRAGANA_AS_KATAKANA = str.maketrans(
    {chr(code): chr(code + 0x60) for code in range(0x3041, 0x3097)}
)


def as_katakana(text: str) -> str:
    """Return the text with its hiragana written in katakana."""
    return text.translate(_HIRAGANA_AS_KATAKANA)


def _wide(word: str) -> bool:
    """Return True for a word in a script written without spaces (CJK)."""
    return any(unicodedata.east_asian_width(char) in "WF" for char in word)


def segment(found: list[str], vocabulary: Callable[[], Iterable[str]]) -> list[str]:
    """Return the words, each run of CJK text read as the home's words inside it.

    The run is scanned from its start: where one of the home's CJK words begins,
    exactly or with one character more or less at MIN_SIMILARITY ("キチン" for
    "キッチン"), it is taken whole (the best, then the longest); other characters
    (particles, verbs, endings) are passed over. `vocabulary` gives the home's
    words; it is asked only when some word is CJK (most turns have none).
    """
    if not any(map(_wide, found)):
        return found
    home = sorted({word for word in vocabulary() if _wide(word)}, key=len, reverse=True)
    out: list[str] = []
    for word in found:
        if not _wide(word) or word in home:
            out.append(word)
            continue
        start = 0
        while start < len(word):
            fits = [(r, len(w), w, end) for w in home for r, end in _at(word, start, w)]
            if not fits:
                start += 1
                continue
            _, _, best, start = max(fits)
            out.append(best)
    return out


def _at(text: str, start: int, word: str) -> Iterator[tuple[float, int]]:
    """Yield (similarity, end) for `word` read at `start` of `text`."""
    if text.startswith(word, start):
        yield 1.0, start + len(word)
        return
    if len(word) < 3:
        return
    for size in (len(word) - 1, len(word) + 1):
        piece = text[start : start + size]
        ratio = difflib.SequenceMatcher(None, piece, word).ratio()
        if len(piece) == size and ratio >= MIN_SIMILARITY:
            yield ratio, start + size


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
