"""What one chat request to llama-server says, apart from the conversation.

The sampling and reasoning options, the JSON schema of an AI task's answer, image
attachments, and the errors of a turn that are the agent's own, not the server's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from contextlib import suppress
import mimetypes
from pathlib import Path
from typing import Any

import probatio

from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm, translation
from homeassistant.helpers.json import json_dumps

from .const import (
    CONF_MAX_TOKENS,
    CONF_REASONING_EFFORT,
    CONF_TEMPERATURE,
    CONF_TOP_P,
    DOMAIN,
    RECOMMENDED_MAX_TOKENS,
    RECOMMENDED_REASONING_EFFORT,
    RECOMMENDED_TEMPERATURE,
    RECOMMENDED_TOP_P,
    SPOKEN_DETAIL_MAX_CHARS,
)
from .llama_server.errors import LlamaServerError
from .prompt import PromptParts

# Template overhead per message and for the template's own text, for the cheap upper
# bound on prompt tokens (a byte-level tokenizer never makes more tokens than bytes).
_TEMPLATE_BYTES_PER_MESSAGE = 32
_TEMPLATE_BYTES = 2048


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


def reasoning_options(effort: str) -> dict[str, Any]:
    """Request fields that set reasoning the way llama-server understands.

    `reasoning_effort` is given to the chat template (and "none" turns thinking off);
    `chat_template_kwargs.enable_thinking` switches templates such as Qwen3's.
    """
    if effort == "off":
        return {
            "reasoning_effort": "none",
            "chat_template_kwargs": {"enable_thinking": False},
        }
    return {
        "reasoning_effort": effort,
        "chat_template_kwargs": {"enable_thinking": True},
    }


def structured_output(
    name: str, structure: probatio.Schema, llm_api: llm.APIInstance | None
) -> dict[str, Any]:
    """Return a JSON-schema `response_format` for an AI task's structure."""
    schema = probatio.to_openapi(
        structure,
        custom_serializer=(
            llm_api.custom_serializer if llm_api else llm.selector_serializer
        ),
        openapi_version="3.1.0",
    )
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "strict": True, "schema": schema},
    }


def request_options(
    options: Mapping[str, Any],
    parts: PromptParts,
    slot: int,
    *,
    llm_api: llm.APIInstance | None = None,
    structure_name: str | None = None,
    structure: probatio.Schema | None = None,
) -> dict[str, Any]:
    """Everything in the request except the messages (`options`: the subentry's)."""
    payload: dict[str, Any] = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
        "id_slot": slot,
        "max_tokens": int(options.get(CONF_MAX_TOKENS, RECOMMENDED_MAX_TOKENS)),
        "temperature": float(options.get(CONF_TEMPERATURE, RECOMMENDED_TEMPERATURE)),
        "top_p": float(options.get(CONF_TOP_P, RECOMMENDED_TOP_P)),
        **reasoning_options(
            str(options.get(CONF_REASONING_EFFORT, RECOMMENDED_REASONING_EFFORT))
        ),
    }
    if parts.tools:
        payload["tools"] = parts.tools
    if structure is not None and structure_name:
        payload["response_format"] = structured_output(
            structure_name, structure, llm_api
        )
    return payload


def warm_up_request(
    options: Mapping[str, Any], parts: PromptParts, slot: int
) -> dict[str, Any]:
    """Return the request that reads the static prefix into a slot, and no more.

    The same bytes as a chat's up to the end of its system message and tools.
    """
    return {
        "messages": [
            {"role": "system", "content": parts.system},
            {"role": "user", "content": ""},
        ],
        **request_options(options, parts, slot),
        "max_tokens": 1,
    }


def image_parts(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read image attachments as data URLs (run in the executor)."""
    parts: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise AgentError("llm_attachment_not_found", file=path.name)
        mime_type, _ = mimetypes.guess_type(str(path))
        if not mime_type or not mime_type.startswith("image/"):
            raise AgentError("llm_attachment_unsupported", file=path.name)
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            {
                "type": "image_url",
                "image_url": {"url": f"data:{mime_type};base64,{data}"},
            }
        )
    return parts


def estimated_tokens(payload: Mapping[str, Any]) -> int:
    """Return an upper bound on the prompt's tokens: its bytes, plus the template's."""
    messages = payload.get("messages", [])
    return (
        len(json_dumps([messages, payload.get("tools", [])]).encode())
        + _TEMPLATE_BYTES_PER_MESSAGE * len(messages)
        + _TEMPLATE_BYTES
    )
