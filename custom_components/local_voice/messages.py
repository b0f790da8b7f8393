"""The chat's messages: the system message, the turns, the context on the newest.

The `<context>` block (prompt.py's volatile part) goes into the newest user message
only, so earlier turns are re-sent byte for byte and stay in the server's cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeassistant.components import conversation
from homeassistant.helpers.json import json_dumps

CONTEXT_OPEN = "<context>"
CONTEXT_CLOSE = "</context>"


def with_context(text: str, context: str) -> str:
    """Prepend the context block to a user message."""
    if not context:
        return text
    return f"{CONTEXT_OPEN}\n{context}\n{CONTEXT_CLOSE}\n{text}"


def _tool_result_text(content: conversation.ToolResultContent) -> str:
    data = content.result.data
    if content.result.error and not (isinstance(data, dict) and "error" in data):
        data = {"error": True, **data}
    return json_dumps(data)


def turns(content: Sequence[conversation.Content]) -> list[list[conversation.Content]]:
    """Group a chat log's content (after the system prompt) into user turns."""
    grouped: list[list[conversation.Content]] = []
    for item in content:
        if isinstance(item, conversation.SystemContent):
            continue
        if isinstance(item, conversation.UserContent) or not grouped:
            grouped.append([])
        grouped[-1].append(item)
    return grouped


def _user_message(
    text: str,
    context: str,
    attachments: Sequence[dict[str, Any]],
    *,
    newest: bool,
) -> dict[str, Any]:
    """Return a user message; the newest carries the context block and images."""
    if not newest:
        return {"role": "user", "content": text}
    text = with_context(text, context)
    if attachments:
        return {
            "role": "user",
            "content": [{"type": "text", "text": text}, *attachments],
        }
    return {"role": "user", "content": text}


def _assistant_message(
    item: conversation.AssistantContent, send_reasoning: bool
) -> dict[str, Any]:
    """Return an assistant message with its tool calls (and reasoning, if sent)."""
    message: dict[str, Any] = {"role": "assistant", "content": item.content or ""}
    if item.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.tool_name,
                    "arguments": json_dumps(call.tool_args),
                },
            }
            for call in item.tool_calls
        ]
    if send_reasoning and item.thinking_content:
        message["reasoning_content"] = item.thinking_content
    return message


def build_messages(
    system: str,
    context: str,
    history: Sequence[Sequence[conversation.Content]],
    *,
    send_reasoning: bool = False,
    attachments: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Return OpenAI chat messages: system, then the turns, context on the newest user.

    `attachments` (image content parts) go with the newest user message.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    flat = [item for turn in history for item in turn]
    newest_user = max(
        (
            i
            for i, item in enumerate(flat)
            if isinstance(item, conversation.UserContent)
        ),
        default=-1,
    )
    for index, item in enumerate(flat):
        if isinstance(item, conversation.UserContent):
            newest = index == newest_user
            messages.append(
                _user_message(item.content, context, attachments, newest=newest)
            )
        elif isinstance(item, conversation.AssistantContent):
            if item.content or item.tool_calls:
                messages.append(_assistant_message(item, send_reasoning))
        elif isinstance(item, conversation.ToolResultContent):
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.tool_call_id,
                    "content": _tool_result_text(item),
                }
            )
    if newest_user < 0 and context:
        # No user turn (should not happen): keep the context as its own user message.
        messages.append({"role": "user", "content": with_context("", context)})
    return messages
