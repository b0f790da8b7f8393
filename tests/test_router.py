"""Two models on one REAL llama-server router, each answering for its own agent.

The router (`--models-preset`, `--models-max 2`) holds Qwen2.5-Coder-0.5B, SmolLM2-135M
and a `broken` model whose file is no model. Each model runs in a child server
of its own, loaded on the first request that names it; local_voice names the
subentry's model in every request, keeps each model's slots apart, and warms a
model's slots only once the model is loaded (a warm-up must not load one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import json
from pathlib import Path
from typing import Any

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_MODEL,
    CONF_SERVICE,
    CONF_TEMPERATURE,
    DOMAIN,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SERVICE_LLAMA,
    SUBENTRY_CONVERSATION,
)
from custom_components.local_voice.diagnostics import (
    async_get_config_entry_diagnostics,
)
from homeassistant import config_entries
from homeassistant.components import conversation
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import CONF_LLM_HASS_API, CONF_URL
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component

from .backends import (
    QWEN,
    SMOL,
    Backend,
    async_until_loaded,
    require,
    router_argv,
    router_listing,
    router_models,
    running,
    start,
)
from .common import setup_entry
from .conversation_support import RecordingProxy

MODELS = ("broken", "qwen", "smol")


@pytest.fixture
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh router: every model unloaded; `--models-max` 2 unless a test says."""
    require(QWEN, SMOL)
    models_max = getattr(request, "param", 2)
    preset = tmp_path / "models.ini"
    argv = router_argv(preset, router_models(preset), models_max=models_max)
    with running(start("llama-router", argv, "http", tmp_path)) as srv:
        yield srv


@pytest.fixture
async def proxy(router: Backend) -> AsyncIterator[RecordingProxy]:
    """The router behind a proxy that keeps each chat request and its answer."""
    recording = await RecordingProxy(router.url).start()
    yield recording
    await recording.stop()


def router_entry(url: str, models: dict[str, str | None]) -> MockConfigEntry:
    """A llama-server entry with one plain-chat agent per title, on its model."""
    options = {
        **RECOMMENDED_CONVERSATION_OPTIONS,
        CONF_TEMPERATURE: 0.0,
        CONF_MAX_TOKENS: 8,
    }
    options.pop(CONF_LLM_HASS_API)
    return MockConfigEntry(
        domain=DOMAIN,
        title="llama-server router",
        unique_id=url,
        data={CONF_SERVICE: SERVICE_LLAMA, CONF_URL: url},
        subentries_data=[
            ConfigSubentryData(
                subentry_type=SUBENTRY_CONVERSATION,
                title=title,
                data={**options, CONF_MODEL: model} if model else options,
                unique_id=None,
            )
            for title, model in models.items()
        ],
    )


async def loaded_models(router: Backend) -> dict[str, str]:
    """Ask the router itself which of its models are loaded."""
    listed = await asyncio.to_thread(router_listing, router.url)
    return {model["id"]: model["status"]["value"] for model in listed}


def agents(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    """Each agent's entity id, by its subentry's title."""
    titles = {sid: sub.title for sid, sub in entry.subentries.items()}
    return {
        titles[e.config_subentry_id]: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == "conversation" and e.config_subentry_id
    }


async def ask(hass: HomeAssistant, agent_id: str, text: str) -> str:
    """Send a new chat to an agent; return what it said."""
    result = await conversation.async_converse(
        hass, text, None, Context(), language="en", agent_id=agent_id
    )
    return str(result.response.speech["plain"]["speech"])


def answered_by(exchange: tuple[bytes, bytes]) -> tuple[str, str, dict[str, Any]]:
    """The model a request named, the model that answered, and its timings."""
    request, answer = exchange
    chunks = [
        json.loads(line.removeprefix(b"data: "))
        for line in answer.splitlines()
        if line.startswith(b"data: {")
    ]
    timings = next(c["timings"] for c in reversed(chunks) if "timings" in c)
    return json.loads(request)["model"], chunks[0]["model"], timings


async def test_router_agents_answer_on_their_own_models(
    hass: HomeAssistant,
    router: Backend,
    proxy: RecordingProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two agents, one router: each on its model, loaded at start and warmed."""
    entry = await setup_entry(
        hass, router_entry(proxy.url, {"Quick": "smol", "Coder": "qwen"})
    )
    ids = agents(hass, entry)
    # The router keeps both: they were asked for at start, as one model's server
    # has its model loaded; once the poll sees them, their slots are warmed.
    await async_until_loaded(router.url, ("qwen", "smol"), limit=120)
    coordinator = entry.runtime_data.coordinator
    await coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert sorted(coordinator.data.loaded) == ["qwen", "smol"]
    assert "model qwen is loaded: 2 slots of 4096 tokens" in caplog.text
    sensor = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}-loaded_models"
    )
    assert sensor is not None
    state = hass.states.get(sensor)
    assert state is not None
    assert (state.state, state.attributes["models"]) == ("2", ["qwen", "smol"])
    warm_ups = len(proxy.exchanges)
    assert {model for model, _, _ in map(answered_by, proxy.exchanges)} == {
        "qwen",
        "smol",
    }

    for agent in ("Quick", "Coder", "Quick", "Coder"):
        assert await ask(hass, ids[agent], "Say hello.")
    chats = [answered_by(exchange) for exchange in proxy.exchanges[warm_ups:]]
    assert [(asked, model) for asked, model, _ in chats] == [
        ("smol", "smol"),
        ("qwen", "qwen"),
    ] * 2
    # Each model kept its own warmed cache: every chat took the whole system
    # prompt (30-odd tokens) from it, and read only its context block and words.
    assert all(timings["cache_n"] >= 30 for _, _, timings in chats), chats
    # Diagnostics show each model's slots and what they hold.
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    for model in ("qwen", "smol"):
        assert diagnostics["models"][model]["slots"], model
        assert diagnostics["models"][model]["held"], model
    assert coordinator.load_seconds == {}  # every chat found its model loaded


@pytest.mark.parametrize("router", [1], indirect=True)
async def test_router_past_models_max_loads_each_model_by_its_chat(
    hass: HomeAssistant, router: Backend, proxy: RecordingProxy
) -> None:
    """Two agents' models on a router that keeps one: nothing loaded at start.

    Loading both would only unload one; a warm-up would load one too.
    """
    entry = await setup_entry(
        hass, router_entry(proxy.url, {"Quick": "smol", "Coder": "qwen"})
    )
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert set((await loaded_models(router)).values()) == {"unloaded"}
    assert proxy.exchanges == []
    # Every switch costs a load and the cache: a repair says so.
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"models_switch_{entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_key == "models_switch"  # no load measured yet
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["models"] == "qwen, smol"
    ids = agents(hass, entry)
    assert await ask(hass, ids["Quick"], "Say hello.")
    assert (await loaded_models(router))["smol"] == "loaded"
    assert await ask(hass, ids["Coder"], "Say hello.")
    models = await loaded_models(router)
    assert (models["smol"], models["qwen"]) == ("unloaded", "loaded")
    # Each chat waited for its model's load: measured, and said in the repair.
    coordinator = entry.runtime_data.coordinator
    loads = coordinator.load_seconds
    print(f"measured loads: {loads}")
    assert set(loads) == {"smol", "qwen"} and all(s > 0.2 for s in loads.values())
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"models_switch_{entry.entry_id}"
    )
    assert issue is not None and issue.translation_key == "models_switch_measured"
    assert issue.translation_placeholders is not None
    assert (
        issue.translation_placeholders["load_seconds"] == f"{max(loads.values()):.1f}"
    )
    sensor = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}-loaded_models"
    )
    assert sensor is not None
    state = hass.states.get(sensor)
    assert state is not None and state.attributes["load_seconds"] == loads


async def test_router_model_that_cannot_load_is_said(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """A model the router cannot load is said plainly; the other agent still works."""
    entry = await setup_entry(
        hass, router_entry(proxy.url, {"Broken": "broken", "Quick": "smol"})
    )
    ids = agents(hass, entry)
    said = await ask(hass, ids["Broken"], "Say hello.")
    assert said.startswith("The model is not available"), said
    assert "broken" in said
    assert await ask(hass, ids["Quick"], "Say hello.")


async def test_router_model_gone_is_a_repair(
    hass: HomeAssistant, proxy: RecordingProxy, hass_client: ClientSessionGenerator
) -> None:
    """An agent naming a model the router lacks: a repair whose fix picks another."""
    entry = await setup_entry(hass, router_entry(proxy.url, {"Old": "gone"}))
    issues = ir.async_get(hass)
    issue_id = f"model_missing_{entry.entry_id}"
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert (issue.severity, issue.is_fixable) == (ir.IssueSeverity.ERROR, True)
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["missing"] == "gone"
    assert issue.translation_placeholders["models"] == ", ".join(MODELS)

    # The fix, through Home Assistant's repairs API as the frontend calls it.
    assert await async_setup_component(hass, "repairs", {})
    client = await hass_client()
    resp = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": issue_id}
    )
    flow = await resp.json()
    assert flow["step_id"] == "init", flow
    assert flow["description_placeholders"]["agents"] == "Old"
    resp = await client.post(
        f"/api/repairs/issues/fix/{flow['flow_id']}", json={CONF_MODEL: "smol"}
    )
    assert (await resp.json())["type"] == "create_entry"
    await hass.async_block_till_done()
    (subentry,) = entry.subentries.values()
    assert subentry.data[CONF_MODEL] == "smol"
    # The entry reloaded on its new model: the repair is gone, the agent answers.
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    assert await ask(hass, agents(hass, entry)["Old"], "Say hello.")


async def test_router_subentry_picks_its_model(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """The agent's options list the router's models; the pick is what requests name."""
    entry = await setup_entry(hass, router_entry(proxy.url, {"Quick": "smol"}))
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CONVERSATION), context={"source": "user"}
    )
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"].schema
    (model_key,) = [key for key in schema if key == CONF_MODEL]
    assert schema[model_key].config["options"] == list(MODELS)
    # Nothing loaded yet: the first model listed is the default.
    assert model_key.description["suggested_value"] == "broken"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            **RECOMMENDED_CONVERSATION_OPTIONS,
            CONF_LLM_HASS_API: [],
            "name": "Coder",
            CONF_MODEL: "qwen",
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await ask(hass, agents(hass, entry)["Coder"], "Say hello.")
    assert json.loads(proxy.bodies[-1])["model"] == "qwen"


async def test_router_is_added_by_the_config_flow(
    hass: HomeAssistant, router: Backend
) -> None:
    """A router's address makes an entry at once: what its models' templates can do
    is not known before they load, so there is no warning about tools.
    """
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SERVICE_LLAMA}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: router.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "llama-server router"
    # Its agent and AI task name the model a router picks: the first, none loaded.
    entry = result["result"]
    models = {sub.data[CONF_MODEL] for sub in entry.subentries.values()}
    assert models == {"broken"}
    await hass.async_block_till_done()
    # Its agent offers Assist's tools; nothing is reported against the router.
    assert not [
        issue
        for (domain, _), issue in ir.async_get(hass).issues.items()
        if domain == DOMAIN
    ]
