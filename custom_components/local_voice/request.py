"""What one chat request to llama-server says, apart from the conversation.

The sampling and reasoning options, the JSON schema of an AI task's answer, image
attachments.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
import mimetypes
from pathlib import Path
from typing import Any

import probatio

from homeassistant.components import conversation
from homeassistant.helpers import llm
from homeassistant.helpers.json import json_dumps

from .agent_text import AgentError
from .const import (
    CONF_MAX_HISTORY,
    CONF_MAX_TOKENS,
    CONF_MODEL,
    CONF_REASONING_EFFORT,
    CONF_SEND_REASONING,
    CONF_TEMPERATURE,
    CONF_TOP_P,
    RECOMMENDED_MAX_TOKENS,
    RECOMMENDED_REASONING_EFFORT,
    RECOMMENDED_TEMPERATURE,
    RECOMMENDED_TOP_P,
)
from .messages import build_messages, turns
from .prompt import PromptParts

# Template overhead per message and for the template's own text, for the cheap upper
# bound on prompt tokens (a byte-level tokenizer never makes more tokens than bytes).
_TEMPLATE_BYTES_PER_MESSAGE = 32
_TEMPLATE_BYTES = 2048


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
    if model := options.get(CONF_MODEL):
        payload["model"] = model  # a router's model; a one-model server ignores it
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


def turn_warm_up_request(
    options: Mapping[str, Any],
    parts: PromptParts,
    slot: int,
    llm_api: llm.APIInstance | None,
    chat: Sequence[conversation.Content] = (),
) -> dict[str, Any]:
    """Return a turn's request up to where the user's words go, and no more.

    The same bytes as the chat's up to the end of its context block: `chat` is the
    conversation it goes on with (none for a new one).
    """
    words: list[conversation.Content] = [conversation.UserContent("")]
    grouped = [*turns(chat), words]
    if (max_history := int(options.get(CONF_MAX_HISTORY) or 0)) > 0:
        grouped = grouped[-max_history:]
    return {
        "messages": build_messages(
            parts.system,
            parts.context,
            grouped,
            send_reasoning=bool(options.get(CONF_SEND_REASONING, False)),
        ),
        **request_options(options, parts, slot, llm_api=llm_api),
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
