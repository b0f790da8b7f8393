"""Helpers for the conversation and AI task tests: a small home, satellites, a fake.

The fake llama-server (`FakeLlama`) is only for what a real server cannot produce
(malformed or truncated streams, invalid tool-call JSON, a server that does not stream):
it answers /health, /v1/models and /props with a real recorded /props, and replays
recorded SSE bodies from tests/fixtures/sse, each possibly altered in a way the test
states. Everything else in these tests talks to a real llama-server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
import json
from pathlib import Path
import time
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.local_voice.const import DOMAIN
from custom_components.local_voice.coordinator import LlamaServerData
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.components.intent import async_register_timer_handler
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
from homeassistant.setup import async_setup_component

from .backends import free_port

FIXTURES = Path(__file__).parent / "fixtures"
SSE = FIXTURES / "sse"

# (entity_id, name, area, state) — a small home; the benchmark uses a bigger one.
ENTITIES = [
    ("light.kitchen_ceiling", "Kitchen light", "kitchen", "off"),
    ("light.living_room_lamp", "Living room lamp", "living_room", "on"),
    ("light.bedroom_light", "Bedroom light", "bedroom", "off"),
    ("switch.coffee_machine", "Coffee machine", "kitchen", "off"),
    (
        "sensor.living_room_temperature",
        "Living room temperature",
        "living_room",
        "21.5",
    ),
]
AREAS = {"kitchen": "Kitchen", "living_room": "Living Room", "bedroom": "Bedroom"}


@dataclass
class Home:
    """Ids of what `async_setup_home` created."""

    satellites: dict[str, str] = field(default_factory=dict)  # area id -> device id


async def async_setup_home(
    hass: HomeAssistant, *, timer_areas: tuple[str, ...] = ("kitchen",)
) -> Home:
    """Set up Assist with exposed entities in areas and a satellite device per area."""
    for component in ("conversation", "intent", "llm", "light", "switch", "sensor"):
        assert await async_setup_component(hass, component, {})
    floors = fr.async_get(hass)
    ground = floors.async_create("Ground floor")
    areas = ar.async_get(hass)
    for area_id, name in AREAS.items():
        areas.async_create(
            name, floor_id=ground.floor_id if area_id != "bedroom" else None
        )
    area_ids = {area.name: area.id for area in areas.async_list_areas()}

    entities = er.async_get(hass)
    for entity_id, name, area, state in ENTITIES:
        domain, object_id = entity_id.split(".")
        entry = entities.async_get_or_create(
            domain, "test", object_id, suggested_object_id=object_id
        )
        entities.async_update_entity(
            entry.entity_id, area_id=area_ids[AREAS[area]], original_name=name
        )
        attributes: dict[str, Any] = {"friendly_name": name}
        if domain == "sensor":
            attributes |= {"unit_of_measurement": "°C", "device_class": "temperature"}
        hass.states.async_set(entry.entity_id, state, attributes)
        async_expose_entity(hass, conversation.DOMAIN, entry.entity_id, True)

    home = Home()
    config_entry = MockConfigEntry(domain="test_satellites")
    config_entry.add_to_hass(hass)
    devices = dr.async_get(hass)
    for area_id, name in AREAS.items():
        device = devices.async_get_or_create(
            config_entry_id=config_entry.entry_id,
            identifiers={("test_satellites", area_id)},
            name=f"{name} satellite",
        )
        devices.async_update_device(device.id, area_id=area_ids[name])
        home.satellites[area_id] = device.id
        if area_id in timer_areas:
            async_register_timer_handler(hass, device.id, lambda *_: None)
    return home


def agent_id(hass: HomeAssistant) -> str:
    """Return the entity id of the (only) local_voice conversation entity."""
    ids = [
        entry.entity_id
        for entry in er.async_get(hass).entities.values()
        if entry.platform == DOMAIN and entry.domain == "conversation"
    ]
    assert len(ids) == 1, ids
    return ids[0]


async def converse(
    hass: HomeAssistant,
    text: str,
    *,
    device_id: str | None = None,
    conversation_id: str | None = None,
    extra_system_prompt: str | None = None,
    context: Context | None = None,
) -> conversation.ConversationResult:
    """Send one sentence to the local_voice agent."""
    return await conversation.async_converse(
        hass,
        text,
        conversation_id,
        context or Context(),
        language="en",
        agent_id=agent_id(hass),
        device_id=device_id,
        extra_system_prompt=extra_system_prompt,
    )


def speech(result: conversation.ConversationResult) -> str:
    """Return the plain speech of a conversation result."""
    return str(result.response.speech.get("plain", {}).get("speech", ""))


def chat_log_of(hass: HomeAssistant, conversation_id: str) -> conversation.ChatLog:
    """Return the stored chat log of a conversation."""
    from homeassistant.components.conversation.chat_log import (  # noqa: PLC0415
        DATA_CHAT_LOGS,
    )

    return hass.data[DATA_CHAT_LOGS][conversation_id]


def sse_events(name: str) -> list[bytes]:
    """Return a recorded SSE body split into its events (each ends in a blank line)."""
    body = (SSE / name).read_bytes()
    return [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]


def tool_call_events(arguments: str, name: str = "HassTurnOn") -> list[bytes]:
    """The recorded tool call, its name and argument fragments replaced by one each."""
    out: list[bytes] = []
    replaced = False
    for event in sse_events("tool_call.sse"):
        chunk = (
            json.loads(event.decode().removeprefix("data: "))
            if event.startswith(b"data: {")
            else None
        )
        calls = (
            chunk
            and chunk["choices"]
            and chunk["choices"][0]["delta"].get("tool_calls")
        )
        if calls:
            if replaced:
                continue
            calls[0]["function"] |= {"name": name, "arguments": arguments}
            replaced = True
            out.append(f"data: {json.dumps(chunk)}\n\n".encode())
            continue
        out.append(event)
    assert replaced
    return out


def answer_events(text: str) -> list[bytes]:
    """The recorded plain answer, its words replaced by `text` in one delta."""
    events = sse_events("answer.sse")
    content = json.loads(events[1].decode().removeprefix("data: "))
    content["choices"][0]["delta"]["content"] = text
    ends = [event for event in events if b'"finish_reason":"stop"' in event]
    return [events[0], f"data: {json.dumps(content)}\n\n".encode(), *ends, events[-1]]


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


WARM_UP_DONE = [
    b'data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],'
    b'"timings":{"prompt_n":0,"cache_n":0}}\n\n',
    b"data: [DONE]\n\n",
]


def warming(hass: HomeAssistant) -> bool:
    """Whether a slot manager of local_voice is sending a warm-up right now."""
    return any(
        isinstance(data := getattr(entry, "runtime_data", None), LlamaServerData)
        and data.slots.warming is not None
        for entry in hass.config_entries.async_entries(DOMAIN)
    )


class FakeLlama:
    """A loopback llama-server stand-in for malformed streams; records request bodies.

    `answers` is a list of handlers, one per chat request in order (the last repeats).
    Requests that come while the slot manager of `hass` warms a slot get `warm_up`
    (by default a finished empty answer) and are kept apart in `warm_ups`.
    """

    def __init__(
        self,
        hass: HomeAssistant | None,
        answers: list[Handler],
        props: dict[str, Any] | None = None,
        warm_up: Handler | None = None,
    ) -> None:
        """Keep the answers (and /props changes); call `start` to listen."""
        self.hass = hass
        self.answers = answers
        self.warm_up = warm_up or replay(WARM_UP_DONE)
        self.props_changes = props or {}
        self.requests: list[dict[str, Any]] = []
        self.warm_ups: list[dict[str, Any]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeLlama:
        """Listen on the loopback port."""
        props = json.loads((FIXTURES / "props_qwen.json").read_text())
        props |= self.props_changes
        app = web.Application()

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def models(_: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "fake"}]})

        async def get_props(_: web.Request) -> web.Response:
            return web.json_response(props)

        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            if self.hass is not None and warming(self.hass):
                self.warm_ups.append(body)
                return await self.warm_up(request, body)
            self.requests.append(body)
            index = min(len(self.requests), len(self.answers)) - 1
            return await self.answers[index](request, body)

        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/props", get_props)
        app.router.add_post("/v1/chat/completions", chat)
        # A handler is cancelled when the client goes away, as llama-server stops.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner:
            await self._runner.cleanup()


def replay(events: list[bytes], *, close_early: bool = False) -> Handler:
    """Answer with recorded SSE events; `close_early` then drops the connection."""

    async def handler(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if close_early:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    return handler


def http_error(status: int, body: str, content_type: str = "text/html") -> Handler:
    """Answer with an HTTP error, as a proxy in front of llama-server might."""

    async def handler(_: web.Request, __: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return handler


def json_answer(body: dict[str, Any]) -> Handler:
    """Answer with one JSON completion: a server that ignores `stream`."""

    async def handler(_: web.Request, __: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(body)

    return handler


class RecordingProxy:
    """A loopback pass-through in front of a real llama-server that keeps each chat
    request and response body, byte for byte: tests compare what was really sent, the
    prompt-cache benchmark reads the server's `timings` from the answers.
    """

    def __init__(self, target: str) -> None:
        """Forward to `target` (a real server's base URL)."""
        self.target = target.rstrip("/")
        self.bodies: list[bytes] = []
        # (request body, response body) of each chat request, in order of completion.
        self.exchanges: list[tuple[bytes, bytes]] = []
        # (sent, answered) of each exchange, on the monotonic clock: when it ran.
        self.spans: list[tuple[float, float]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The chat requests, parsed."""
        return [json.loads(body) for body in self.bodies]

    async def start(self) -> RecordingProxy:
        """Listen on the loopback port."""
        # No deadline of its own (aiohttp's is 5 min): a long prompt on a slow CPU
        # is answered late, not cut off and retried by the client behind the proxy.
        self._session = ClientSession(timeout=ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        sent = time.monotonic()
        body = await request.read()
        chat = request.path == "/v1/chat/completions"
        if chat:
            self.bodies.append(body)
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() in ("authorization", "content-type", "accept")
        }
        headers["Connection"] = "close"
        async with self._session.request(
            request.method,
            f"{self.target}{request.path_qs}",
            data=body or None,
            headers=headers,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            answer = b""
            async for chunk in upstream.content.iter_any():
                answer += chunk
                await response.write(chunk)
                if b"data: [DONE]" in chunk:
                    break
            await response.write_eof()
        if chat:
            self.exchanges.append((body, answer))
            self.spans.append((sent, time.monotonic()))
        return response

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def __aenter__(self) -> RecordingProxy:
        """Start listening for the block."""
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        """Stop listening after the block."""
        await self.stop()
