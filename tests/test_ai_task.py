"""AI task entity: free text, structured data (JSON schema), image attachments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from custom_components.local_voice.ai_task import LocalVoiceAITaskEntity
from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    SUBENTRY_AI_TASK,
)
from homeassistant.components import ai_task, conversation
from homeassistant.components.ai_task.task import GenDataTask
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import chat_session, entity_registry as er

from .backends import Backend
from .common import llama_entry
from .conversation_support import FakeLlama, http_error, replay, sse_events


async def _setup(hass: HomeAssistant, url: str) -> None:
    """Set up an entry whose AI task answers briefly and deterministically."""
    entry = llama_entry(url)
    entry.add_to_hass(hass)
    for subentry in entry.subentries.values():
        if subentry.subentry_type == SUBENTRY_AI_TASK:
            hass.config_entries.async_update_subentry(
                entry,
                subentry,
                data={**subentry.data, CONF_MAX_TOKENS: 48, CONF_TEMPERATURE: 0.0},
            )
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def _task_entity_id(hass: HomeAssistant) -> str:
    ids = [
        e.entity_id
        for e in er.async_get(hass).entities.values()
        if e.domain == "ai_task" and e.platform == "local_voice"
    ]
    assert len(ids) == 1
    return ids[0]


async def _generate(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        ai_task.DOMAIN,
        "generate_data",
        {"entity_id": _task_entity_id(hass), "task_name": "test", **data},
        blocking=True,
        return_response=True,
    )
    assert isinstance(response, dict)
    return response


async def test_structured_data(hass: HomeAssistant, llama_chat_server: Backend) -> None:
    """A structure becomes a JSON-schema response_format; the answer parses to it."""
    await _setup(hass, llama_chat_server.url)
    response = await _generate(
        hass,
        instructions="Describe a red ball: its color, and how many there are (3).",
        structure={
            "color": {"selector": {"text": None}, "required": True},
            "count": {"selector": {"number": {"min": 0, "max": 10}}, "required": True},
        },
    )
    data = response["data"]
    assert set(data) == {"color", "count"}
    assert isinstance(data["color"], str)
    assert isinstance(data["count"], int | float)


async def test_free_text(hass: HomeAssistant, llama_chat_server: Backend) -> None:
    """Without a structure the answer is text."""
    await _setup(hass, llama_chat_server.url)
    response = await _generate(hass, instructions="Name one fruit.")
    assert isinstance(response["data"], str)
    assert response["data"].strip()


async def test_failure_raises_for_the_caller(hass: HomeAssistant) -> None:
    """An automation calling the task gets an error it can handle, with the reason."""
    fake = await FakeLlama(hass, [http_error(500, "boom")]).start()
    try:
        await _setup(hass, fake.url)
        with pytest.raises(HomeAssistantError, match=r"HTTP 500: boom"):
            await _generate(hass, instructions="Name one fruit.")
    finally:
        await fake.stop()


async def test_image_attachment(hass: HomeAssistant, tmp_path: Path) -> None:
    """Images go with the instructions as data URLs, when the server can see.

    No vision model is available here, so the loopback fake reports a vision
    projector in /props and answers with a recorded stream.
    """
    fake = await FakeLlama(
        hass, [replay(sse_events("answer.sse"))], props={"modalities": {"vision": True}}
    ).start()
    try:
        await _setup(hass, fake.url)
        state = hass.states.get(_task_entity_id(hass))
        assert state is not None
        assert state.attributes["supported_features"] & (
            ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS
        )
        image = tmp_path / "door.png"
        image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
        entity = hass.data[ai_task.DATA_COMPONENT].get_entity(_task_entity_id(hass))
        assert isinstance(entity, LocalVoiceAITaskEntity)
        with chat_session.async_get_chat_session(hass) as session:
            result = await entity.internal_async_generate_data(
                session,
                GenDataTask(
                    name="door",
                    instructions="Is the door open?",
                    attachments=[
                        conversation.Attachment(
                            media_content_id="media-source://test/door.png",
                            mime_type="image/png",
                            path=image,
                        )
                    ],
                ),
            )
    finally:
        await fake.stop()
    assert str(result.data).startswith("Alice is a friendly and curious person")
    user = fake.requests[0]["messages"][-1]
    assert user["content"][0]["type"] == "text"
    assert user["content"][0]["text"].endswith("Is the door open?")
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgpmYWtl"},
    }


async def test_no_attachments_without_vision(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """A server without a vision projector does not offer attachments."""
    await _setup(hass, llama_chat_server.url)
    state = hass.states.get(_task_entity_id(hass))
    assert state is not None
    assert not state.attributes["supported_features"] & (
        ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS
    )
