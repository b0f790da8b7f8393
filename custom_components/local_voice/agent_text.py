"""What the agent says in its own words: its errors and its short answers.

A turn that ends for the agent's own reason (not the server's) is an AgentError;
every sentence the agent says itself (errors, "Done: …", a state, "Which one…?")
is a message in strings.json `exceptions`, said in the user's language, each
placeholder cut to a short detail so that nothing long or binary is spoken.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import translation

from .const import DOMAIN, SPOKEN_DETAIL_MAX_CHARS
from .llama_server.errors import LlamaServerError


class AgentError(Exception):
    """A turn ended for the agent's own reason (attachments, tool loop, no answer)."""

    refresh_server = False

    def __init__(self, translation_key: str, **placeholders: Any) -> None:
        """Build the error from a key in strings.json `exceptions`."""
        super().__init__(f"{translation_key}: {placeholders}")
        self.translation_key = translation_key
        self.translation_placeholders = {k: str(v) for k, v in placeholders.items()}


type TurnError = LlamaServerError | AgentError


def spoken_detail(value: str) -> str:
    """Return a placeholder as said within one short sentence: one line, no NUL.

    Server texts and tool errors can be paragraphs; past SPOKEN_DETAIL_MAX_CHARS they
    are cut after a list item or a word and end in "…" (the whole text is in the log
    and the trace).
    """
    text = " ".join(value.replace("\x00", "").split())
    if len(text) <= SPOKEN_DETAIL_MAX_CHARS:
        return text
    cut = text[: SPOKEN_DETAIL_MAX_CHARS - 1]
    for separator in (", ", " "):
        if separator in cut:
            cut = cut.rsplit(separator, 1)[0]
            break
    return cut.rstrip(",;:") + "…"


def error_details(err: TurnError) -> dict[str, str]:
    """Return what the chat log's trace keeps of an error: its key and whole text."""
    return {"error": err.translation_key, "details": str(err).replace("\x00", "")}


async def async_agent_text(
    hass: HomeAssistant, err: TurnError, language: str | None
) -> str:
    """Return what the agent says, in the user's language (English as fallback).

    The agent's own sentences (errors, and the answer when the model only repeats
    a call that is done) are kept as messages in strings.json `exceptions`; each
    placeholder is cut to a short detail (spoken_detail).
    """
    placeholders = {
        name: spoken_detail(value)
        for name, value in err.translation_placeholders.items()
    }
    key = f"component.{DOMAIN}.exceptions.{err.translation_key}.message"
    for lang in dict.fromkeys((language or hass.config.language, "en")):
        strings = await translation.async_get_translations(
            hass, lang, "exceptions", {DOMAIN}
        )
        if message := strings.get(key):
            with suppress(KeyError, IndexError):
                message = message.format(**placeholders)
            return message
    return spoken_detail(str(err))
