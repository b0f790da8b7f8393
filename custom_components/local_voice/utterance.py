"""What the user's words ask for: a question, one request, or a reference back.

The agent's guards need a few facts about the newest user message that a small
model gets wrong: whether it asks about the home rather than for a change (an
action tool must not run for it), whether it is a single request (a done action
can end the turn), and whether it points back to an earlier target ("it", "the
other one"). These are read from the words alone, without Home Assistant, so they
are cheap and tested on their own. The word lists are English; in other languages
only the question mark and the user's device names (grounding.py) are used.
"""

from __future__ import annotations

from dataclasses import dataclass
import itertools
import re

from .vocabulary import as_katakana

# A word: a run of CJK letters (kana, kanji, hangul), or of other letters and
# digits; "Hall lightを消して" is "hall", "light", "ヲ消シテ".
_CJK = "\u1100-\u11ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]+|(?:(?![{_CJK}])[\w'])+")
# "5 minutes", "30 second", "2-hour": the number and its unit, as timers take them.
_DURATION = re.compile(r"(\d+)[\s-]*(hour|minute|second)s?\b")
_QUESTION_STARTS = frozenset(
    {
        "is",
        "are",
        "was",
        "were",
        "what",
        "what's",
        "whats",
        "which",
        "who",
        "where",
        "when",
        "why",
        "how",
        "how's",
        "do",
        "does",
        "did",
        "has",
        "have",
        "tell",
        "anything",
    }
)
# "Can you turn on the light?" is a request, not a question.
_POLITE = frozenset({"can", "could", "would", "will", "please"})
ACTION_VERBS = frozenset(
    {
        "turn",
        "switch",
        "set",
        "open",
        "close",
        "lock",
        "unlock",
        "start",
        "stop",
        "pause",
        "play",
        "resume",
        "dim",
        "brighten",
        "raise",
        "lower",
        "add",
        "put",
        "cancel",
        "activate",
        "make",
        "shut",
        "mute",
        "unmute",
        "skip",
        "increase",
        "decrease",
    }
)
_JOINERS = frozenset({"and", "then", "also", "plus"})
_BACK_REFERENCES = frozenset(
    {"it", "that", "this", "them", "those", "these", "again", "same"}
)
_OTHER = frozenset({"other", "another"})
# Which way a switch goes, as Home Assistant's intents take it: HassTurnOn opens a
# cover and locks a lock, HassTurnOff closes and unlocks.
_ON_WORDS = frozenset({"on", "open", "lock", "activate"})
_OFF_WORDS = frozenset({"off", "close", "shut", "unlock", "deactivate"})
# Words that ask for several devices at once ("all the lights", "the lamps").
_SEVERAL = frozenset(
    {
        *("all", "every", "everything", "both", "lights", "lamps", "fans"),
        *("blinds", "shades", "curtains", "shutters", "switches", "plugs"),
        *("locks", "covers", "speakers"),
    }
)
_PLACE_PREPOSITIONS = frozenset({"in", "at", "upstairs", "downstairs"})
# "On" and "off" say which way after these verbs, and where before a noun's start.
_PREPOSITION_OR_SWITCH = frozenset({"on", "off"})
_SWITCH_VERBS = frozenset({"turn", "switch", "turned", "switched", "put", "flip"})
_NOUN_STARTS = frozenset({"the", "my", "our", "a", "an", "this", "that", "your"})


def words(text: str) -> list[str]:
    """Return the text's words, lower case; "%" is "percent" (whisper writes "30%").

    Hiragana is written in katakana: speech-to-text writes a name in either.
    """
    return _WORD.findall(as_katakana(text.casefold().replace("%", " percent")))


@dataclass(frozen=True, slots=True)
class Utterance:
    """The newest user message, read for the agent's guards."""

    text: str

    @property
    def words(self) -> list[str]:
        """The message's words, lower case."""
        return words(self.text)

    @property
    def place_words(self) -> set[str]:
        """Words naming where ("in the office"): the user may guess a place."""
        found = [word for word in self.words if word != "the"]
        return {
            word
            for before, word in itertools.pairwise(found)
            if before in _PLACE_PREPOSITIONS
        }

    @property
    def is_question(self) -> bool:
        """True when the user asks something rather than asking for a change."""
        found = self.words
        if not found:
            return False
        first = found[0]
        if first in _POLITE and any(word in ACTION_VERBS for word in found[1:4]):
            return False
        return self.text.rstrip().endswith("?") or first in _QUESTION_STARTS

    @property
    def is_command(self) -> bool:
        """True when the message opens with an action verb: an order, not a "don't"."""
        found = [word for word in self.words if word not in _POLITE and word != "you"]
        return bool(found) and found[0] in ACTION_VERBS

    @property
    def is_single_request(self) -> bool:
        """True for one request with nothing else asked alongside it."""
        found = self.words
        if self.is_question or any(word in _JOINERS for word in found[1:]):
            return False
        return "," not in self.text.strip().rstrip(".!")

    @property
    def refers_back(self) -> bool:
        """True when the message points at an earlier target ("turn it off")."""
        return self.wants_other or any(w in _BACK_REFERENCES for w in self.words)

    @property
    def wants_several(self) -> bool:
        """True when the user asks for several devices ("all the lights")."""
        return any(word in _SEVERAL for word in self.words)

    @property
    def duration(self) -> dict[str, int] | None:
        """Return the length the user said ("a 30 second timer"), by unit."""
        found: dict[str, int] = {}
        for number, unit in _DURATION.findall(self.text.casefold()):
            found[f"{unit}s" if not unit.endswith("s") else unit] = int(number)
        return found or None

    @property
    def direction(self) -> str | None:
        """Return "on" or "off" when the words switch one way only, else None.

        "On" and "off" before a noun, not after a verb, are places: "turn the volume
        up on the TV", "put eggs on my list".
        """
        found = set(self.switch_words)
        on, off = bool(found & _ON_WORDS), bool(found & _OFF_WORDS)
        if on == off:
            return None
        return "on" if on else "off"

    @property
    def switch_words(self) -> list[str]:
        """The words, less an "on" or "off" that says where rather than which way."""
        found = self.words
        return [
            word
            for before, word, after in zip(
                ["", *found[:-1]], found, [*found[1:], ""], strict=True
            )
            if word not in _PREPOSITION_OR_SWITCH
            or before in _SWITCH_VERBS
            or after not in _NOUN_STARTS
        ]

    @property
    def wants_other(self) -> bool:
        """True for "the other one": a target like the last one, but not it."""
        return any(word in _OTHER for word in self.words)
