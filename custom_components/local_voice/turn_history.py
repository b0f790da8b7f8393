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


# At most this many states are read out for one question.
def utterance_of(chat_log: conversation.ChatLog) -> Utterance:
    """Return the newest user message."""
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.UserContent):
            return Utterance(content.content)
    return Utterance("")


def _success_ids(data: Any) -> list[str]:
    """Entity ids an intent's response says it acted on."""
    success = data.get("data", {}).get("success") if isinstance(data, dict) else None
    return [
        str(target["id"])
        for target in success or ()
        if isinstance(target, dict)
        and target.get("type") == "entity"
        and target.get("id")
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
                if result and not result.error and (ids := _success_ids(result.data)):
                    return call, ids
    return None, []


def earlier_utterance(chat_log: conversation.ChatLog) -> Utterance | None:
    """Return the user's message of the turn before the newest."""
    users = [c for c in chat_log.content if isinstance(c, conversation.UserContent)]
    return Utterance(users[-2].content) if len(users) > 1 else None


def earlier_targets(chat_log: conversation.ChatLog) -> list[str]:
    """Return the entities the newest earlier turn that acted acted on."""
    return earlier_action(chat_log)[1]


def failed_target_calls(chat_log: conversation.ChatLog) -> list[llm.ToolInput]:
    """Return the newest round's calls that failed to find their target."""
    results: dict[str, llm.ToolResult] = {}
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.ToolResultContent):
            results[content.tool_call_id] = content.result
        elif isinstance(content, conversation.AssistantContent) and content.tool_calls:
            failed: list[llm.ToolInput] = []
            for call in content.tool_calls:
                result = results.get(call.id)
                data = result.data if result and result.error else None
                if (
                    not call.external
                    and isinstance(data, dict)
                    and data.get("error") in TARGET_ERRORS
                ):
                    failed.append(call)
            return failed
    return []


def round_calls(chat_log: conversation.ChatLog) -> list[tuple[llm.ToolInput, bool]]:
    """Return the newest round's calls, each with whether it worked."""
    results: dict[str, llm.ToolResult] = {}
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.ToolResultContent):
            results[content.tool_call_id] = content.result
        elif isinstance(content, conversation.AssistantContent) and content.tool_calls:
            return [
                (call, (r := results.get(call.id)) is not None and not r.error)
                for call in content.tool_calls
            ]
    return []
