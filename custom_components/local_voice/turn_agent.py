"""What one turn needs of the entity it answers for, so turn.py imports no entity."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant

from .llama_server.client import LlamaServerClient
from .llama_server.deltas import DeltaTransformer
from .prompt import PromptParts

type Build = Callable[[int], dict[str, Any]]


class TurnAgent(Protocol):
    """What a turn needs of the entity it answers for (llm_entity.py)."""

    hass: HomeAssistant
    client: LlamaServerClient

    async def async_fit(
        self, build: Build, n_turns: int, drop: int
    ) -> tuple[dict[str, Any], int]:
        """Build the first request, oldest turns dropped until it fits."""

    async def async_add_deltas(
        self, chat_log: conversation.ChatLog, delta: dict[str, Any]
    ) -> None:
        """Add one assistant delta of the agent's own."""

    async def async_stream_deltas(
        self, chat_log: conversation.ChatLog, deltas: AsyncIterator[dict[str, Any]]
    ) -> None:
        """Stream deltas into the chat log (which runs their tool calls)."""

    def watch_model_load(self) -> None:
        """On a router, find out beside the next request whether it waits for a load."""

    def record_request(
        self,
        slot: int,
        parts: PromptParts,
        transformer: DeltaTransformer,
        first_token_ms: float,
    ) -> None:
        """Tell the slot manager what a request read and how fast it answered."""
