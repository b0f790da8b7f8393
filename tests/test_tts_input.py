"""The text filter and sentence splitter for what goes to text-to-speech.

The splitter's tests are here for both of its users: the integration and the
kokoro add-on's server (its copy is checked by tests/addons/test_shared_code.py).
"""

from __future__ import annotations

import random

import pytest

from custom_components.local_voice.wyoming_client.sentences import SentenceSplitter
from custom_components.local_voice.wyoming_client.speech_filter import SpeechFilter


def clean_for_speech(text: str) -> str:
    """Return what the filter releases for a whole text, fed at once."""
    speech_filter = SpeechFilter()
    return (speech_filter.feed(text) + speech_filter.finish()).strip()


@pytest.mark.parametrize(
    ("text", "speech"),
    [
        # Markdown markup goes, the words stay.
        ("## Weather\nIt is **sunny** and *warm*.", "Weather.\nIt is sunny and warm."),
        (
            "__Bold__ and ~~gone~~ but snake_case stays.",
            "Bold and gone but snake_case stays.",
        ),
        (
            "> Quoted\n- one\n* two\n+ three\n- [x] done",
            "Quoted.\none.\ntwo.\nthree.\ndone.",
        ),
        (
            "Steps:\n1. Open the door\n2. Close it",
            "Steps:\n1. Open the door.\n2. Close it.",
        ),
        ("Read [the manual](https://example.com/manual).", "Read the manual."),
        ("![a diagram](diagram.png) Done.", "Done."),
        (
            "| Room | Light |\n|---|:---:|\n| Kitchen | on |",
            "Room, Light.\nKitchen, on.",
        ),
        ("Above\n\n---\n\nBelow", "Above.\nBelow."),
        ("Text <b>bold</b> <br/> end", "Text bold end."),
        # Emoji, pictographs and their joiners go; ordinary symbols stay.
        ("Done ✅ 😀 👨‍👩‍👧 🇺🇸 1️⃣ ★ →", "Done 1."),
        ("It is 20 °C © 2024 and 50% off.", "It is 20 °C © 2024 and 50% off."),
        # URLs go, with the sentence's own punctuation kept.
        ("See https://example.com/a_b?c=1. Then www.example.org, ok", "See. Then, ok."),
        ("More (https://example.com) here", "More here."),
        # Code is not read: fences go whole, inline code unless it is plain words.
        ("Try:\n```python\nprint('hello')\n```\nThat is all.", "Try:\nThat is all."),
        (
            "Run `ls -la` on `light.kitchen`, the `kitchen light`.",
            "Run on, the kitchen light.",
        ),
        ("Unclosed fence\n```\ncode to the end", "Unclosed fence."),
        ("", ""),
        ("😀 🎉", ""),
    ],
)
def test_clean_for_speech(text: str, speech: str) -> None:
    """Markdown, emoji, URLs and code are not read aloud."""
    assert clean_for_speech(text) == speech


LLM_ANSWERS = [
    "## Lights\nThe **kitchen light** is on 💡 and the [hall](https://x.y/z) is off.\n"
    "- Bedroom: *off*\n- Garage: on ✅\n\nAnything else? See https://example.com.",
    "Sure! Here is code:\n```yaml\nlight:\n  - platform: x\n```\n"
    "Use `kitchen light` or `light.kitchen_main`. It's 21 °C.\n"
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "Dr. Smith said 3.5 degrees, e.g. warm. Mr. J. R. R. Tolkien wrote it! "
    "Really? Yes…",
    '"Quoted," she said. <i>Italic</i> and __under__ and ~~strike~~ text; done.',
    "**キッチン**の電気をつけました\u3002リビングは\u300121度です\uff01\n"
    "- 寝室: オフ\n- Garage light\u3082オン",
]


@pytest.mark.parametrize("text", LLM_ANSWERS)
def test_filter_ignores_how_text_is_chunked(text: str) -> None:
    """Any split of the stream into deltas gives the same speech as the whole."""
    whole = clean_for_speech(text)
    rng = random.Random(text)
    for _ in range(100):
        speech_filter = SpeechFilter()
        spoken = ""
        position = 0
        while position < len(text):
            size = rng.randint(1, 8)
            spoken += speech_filter.feed(text[position : position + size])
            position += size
        spoken += speech_filter.finish()
        assert spoken.strip() == whole


def test_filter_releases_text_before_the_stream_ends() -> None:
    """Complete words come out at once; open constructs are held, then cleaned."""
    speech_filter = SpeechFilter()
    assert (
        speech_filter.feed("The kitchen light is on. Th") == "The kitchen light is on."
    )
    assert speech_filter.feed("e hall is ") == " The hall is"
    # A link is held until it is complete: its URL never leaks out.
    assert speech_filter.feed("[off](https://exa") == ""
    assert speech_filter.feed("mple.com) for now") == " off for"
    assert speech_filter.finish() == " now.\n"


def test_filter_releases_japanese_at_its_punctuation() -> None:
    """Text without spaces comes out at each CJK mark, not at the end of the answer.

    A Japanese line ends with the ideographic full stop; English words in it stay.
    """
    speech_filter = SpeechFilter()
    out = [
        speech_filter.feed(part)
        for part in (
            "キッチンの",
            "電気を",
            "つけました\u3002リビン",
            "グは\u3001暖かい",
        )
    ]
    assert out == ["", "", "キッチンの電気をつけました\u3002", "リビングは\u3001"]
    assert speech_filter.feed("です\nGarage light\u3082") == "暖かいです\u3002\nGarage"
    assert speech_filter.finish() == " light\u3082\u3002\n"


def test_filter_drops_code_blocks_across_deltas() -> None:
    """A fenced block split over many deltas is dropped whole."""
    speech_filter = SpeechFilter()
    out = [
        speech_filter.feed(part)
        for part in ["Here:\n`", "``py", "\nx = 1", "\n`", "``\nOk."]
    ]
    out.append(speech_filter.finish())
    assert "".join(out) == "Here:\nOk.\n"
    assert out[2] == ""  # nothing of the code came out


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("It is 3.5 degrees. Next.", ["It is 3.5 degrees.", "Next."]),
        (
            "Dr. Smith and Mr. J. Doe came. Then e.g. this.",
            ["Dr. Smith and Mr. J. Doe came.", "Then e.g. this."],
        ),
        ("Steps:\n1. Open it.\n2. Close it", ["Steps:", "1. Open it.", "2. Close it"]),
        ('"Hello." Then (aside.) End.', ['"Hello."', "Then (aside.)", "End."]),
        ("Wait… what?! Ok", ["Wait…", "what?!", "Ok"]),
        (". , !", []),
        ("Prof. Oak is in. Ms. Joy too.", ["Prof. Oak is in.", "Ms. Joy too."]),
        (
            "Steps:\n1. Call Dr. Smith. 2. Open the door…\nDone\u3002OK",
            ["Steps:", "1. Call Dr. Smith.", "2. Open the door…", "Done\u3002", "OK"],
        ),
        # CJK full stops end a sentence with no space after them, closing brackets
        # stay with it.
        (
            "電気をつけました\u3002暖かいです\uff01本当\uff1f",
            ["電気をつけました\u3002", "暖かいです\uff01", "本当\uff1f"],
        ),
        (
            "\u300cはい\u3002\u300dと言った\u3002",
            ["\u300cはい\u3002\u300d", "と言った\u3002"],
        ),
    ],
)
def test_sentence_splitter(text: str, sentences: list[str]) -> None:
    """Sentences end at . ! ? … and line ends, not at abbreviations or numbers."""
    splitter = SentenceSplitter()
    assert splitter.feed(text) + splitter.finish() == sentences


def test_sentence_splitter_streams() -> None:
    """A sentence comes out as soon as it is complete; a long one is cut at a comma."""
    splitter = SentenceSplitter(max_chars=60)
    assert splitter.feed("The light", at_word_end=False) == []
    assert splitter.feed(" is on.", at_word_end=False) == []  # "on.5" could follow
    assert splitter.feed(" The") == ["The light is on."]
    rooms = " hall and the long kitchen, the garage, the garden and the attic are off"
    assert splitter.feed(rooms) == ["The hall and the long kitchen, the garage,"]
    assert splitter.finish() == ["the garden and the attic are off"]


def test_sentence_splitter_takes_deltas_that_end_inside_words() -> None:
    """Deltas as streaming Wyoming clients send them: "21." may become "21.5"."""
    splitter = SentenceSplitter()
    chunks = [
        "Turning on",
        " the kitchen light.",
        " The living",
        " room is 21.",
        "5 de",
    ]
    out = [splitter.feed(chunk, at_word_end=False) for chunk in chunks]
    assert out == [[], [], ["Turning on the kitchen light."], [], []]
    assert splitter.feed("grees! Anything", at_word_end=False) == [
        "The living room is 21.5 degrees!"
    ]
    assert splitter.finish() == ["Anything"]
    assert splitter.finish() == []


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "The kitchen light is on now, and the hall light is off, as asked.",
            ["The kitchen light is on now,", "and the hall light is off, as asked."],
        ),
        # Too short to say alone: the first piece is the sentence.
        (
            "Sure, the light is on. Then, more.",
            ["Sure, the light is on.", "Then, more."],
        ),
        ("1,000 lights are on now.", ["1,000 lights are on now."]),
        (
            "キッチンの電気を\u3001つけました\u3002はい\u3001どうぞ\u3002",
            ["キッチンの電気を\u3001", "つけました\u3002", "はい\u3001どうぞ\u3002"],
        ),
        ("はい\u3001つけました\u3002", ["はい\u3001つけました\u3002"]),
    ],
)
def test_sentence_splitter_cuts_the_first_clause(text: str, pieces: list[str]) -> None:
    """The first piece ends at the first clause long enough to say, and only it."""
    whole = SentenceSplitter()
    assert whole.feed(text) + whole.finish() == pieces
    streamed = SentenceSplitter()
    out = [piece for char in text for piece in streamed.feed(char, at_word_end=False)]
    assert out + streamed.finish() == pieces


def test_sentence_splitter_cuts_at_a_cjk_stop_at_once() -> None:
    """A CJK sentence is out as soon as its full stop is: no space will follow."""
    splitter = SentenceSplitter()
    assert splitter.feed("キッチンの", at_word_end=False) == []
    assert splitter.feed("電気をつけました\u3002", at_word_end=False) == [
        "キッチンの電気をつけました\u3002"
    ]
    assert splitter.feed("リビングは", at_word_end=False) == []
    assert splitter.finish() == ["リビングは"]
