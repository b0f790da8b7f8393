"""What the chat log says of the newest turn and the ones before it.

The guards read the user's newest words, what the last turn that acted acted on
(for "it" and "the other one"), and the newest round's calls with their results.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components import conversation
from homeassistant.helpers import llm

from .utterance import Utterance

TARGET_ERRORS = frozenset(
    ("MatchFailedError", "NoStatesMatchedError", "InvalidSlotInfo")
)


def utterance_of(chat_log: conversation.ChatLog) -> Utterance:
    """Return the newest user message."""
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.UserContent):
            return Utterance(content.content)
    return Utterance("")


def acted_on(data: Any, field: str) -> list[str]:
    """Return a field ("id", "name") of the entities an intent's response acted on."""
    success = data.get("data", {}).get("success") if isinstance(data, dict) else None
    return [
        str(target[field])
        for target in success or ()
        if isinstance(target, dict)
        and target.get("type") == "entity"
        and target.get(field)
    ]


def earlier_action(
    chat_log: conversation.ChatLog,
) -> tuple[llm.ToolInput | None, list[str]]:
    """Return the newest earlier turn's last call that acted, and what it acted on."""
    results: dict[str, llm.ToolResult] = {}
    newest = True
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.UserContent):
            newest = False
        elif newest:
            continue
        elif isinstance(content, conversation.ToolResultContent):
            results[content.tool_call_id] = content.result
        elif isinstance(content, conversation.AssistantContent):
            for call in reversed(content.tool_calls or ()):
                result = results.get(call.id)
                if result and not result.error and (ids := acted_on(result.data, "id")):
                    return call, ids
    return None, []


def earlier_utterance(chat_log: conversation.ChatLog) -> Utterance | None:
    """Return the user's message of the turn before the newest."""
    users = [c for c in chat_log.content if isinstance(c, conversation.UserContent)]
    return Utterance(users[-2].content) if len(users) > 1 else None


def earlier_targets(chat_log: conversation.ChatLog) -> list[str]:
    """Return the entities the newest earlier turn that acted acted on."""
    return earlier_action(chat_log)[1]


def newest_round(
    chat_log: conversation.ChatLog,
) -> list[tuple[llm.ToolInput, llm.ToolResult | None]]:
    """Return the newest round's calls, each with its result (if it has one)."""
    results: dict[str, llm.ToolResult] = {}
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.ToolResultContent):
            results[content.tool_call_id] = content.result
        elif isinstance(content, conversation.AssistantContent) and content.tool_calls:
            return [(call, results.get(call.id)) for call in content.tool_calls]
    return []


def failed_target_calls(chat_log: conversation.ChatLog) -> list[llm.ToolInput]:
    """Return the newest round's calls that failed to find their target."""
    return [
        call
        for call, result in newest_round(chat_log)
        if not call.external
        and result is not None
        and result.error
        and isinstance(result.data, dict)
        and result.data.get("error") in TARGET_ERRORS
    ]


def round_calls(chat_log: conversation.ChatLog) -> list[tuple[llm.ToolInput, bool]]:
    """Return the newest round's calls, each with whether it worked."""
    return [
        (call, result is not None and not result.error)
        for call, result in newest_round(chat_log)
    ]
