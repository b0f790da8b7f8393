"""Config flow tests, each against a real server that produces the case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import sys
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest

from custom_components.local_voice.const import (
    CONF_MAX_HISTORY,
    CONF_MAX_TOKENS,
    CONF_REASONING_EFFORT,
    CONF_SEND_REASONING,
    CONF_SERVICE,
    CONF_TEMPERATURE,
    CONF_TOP_P,
    DEFAULT_CONVERSATION_NAME,
    DOMAIN,
    RECOMMENDED_AI_TASK_OPTIONS,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SERVICE_ASR,
    SERVICE_LLAMA,
    SERVICE_TTS,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from homeassistant import config_entries
from homeassistant.const import (
    CONF_API_KEY,
    CONF_HOST,
    CONF_LLM_HASS_API,
    CONF_NAME,
    CONF_PORT,
    CONF_PROMPT,
    CONF_URL,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

from .backends import SMOL, Backend, free_port, llama_argv, require, running, start
from .common import llama_entry, setup_entry, wyoming_entry

API_KEY = "sesame"


@pytest.fixture
def mock_setup_entry() -> Iterator[AsyncMock]:
    """Keep created entries from setting up: these tests are about the flow."""
    with patch(
        "custom_components.local_voice.async_setup_entry", return_value=True
    ) as mock:
        yield mock


@pytest.fixture(scope="module")
def llama_key_server(backend_logs: Path) -> Iterator[Backend]:
    """A real llama-server that requires an API key."""
    require(SMOL)
    argv = llama_argv(SMOL, "--api-key", API_KEY, ctx=2048, slots=1)
    with running(start("llama-key", argv, "http", backend_logs)) as server:
        yield server


@pytest.fixture(scope="module")
def plain_http_server(backend_logs: Path) -> Iterator[Backend]:
    """A real HTTP server that is not llama-server."""
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
    with running(start("http", argv, "tcp", backend_logs)) as server:
        yield server


async def _start(hass: HomeAssistant, step: str) -> dict[str, Any]:
    """Open the flow and pick a server kind from the menu."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": step}
    )


@pytest.mark.usefixtures("mock_setup_entry")
async def test_llama_server(hass: HomeAssistant, llama_tools_server: Backend) -> None:
    """A llama-server with a tool-capable template becomes an entry at once."""
    result = await _start(hass, SERVICE_LLAMA)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == SERVICE_LLAMA
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_tools_server.url + "/"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert result["data"] == {
        CONF_SERVICE: SERVICE_LLAMA,
        CONF_URL: llama_tools_server.url + "/",
    }
    entry = result["result"]
    assert entry.unique_id == llama_tools_server.url
    subentries = {s.subentry_type: s for s in entry.subentries.values()}
    assert subentries[SUBENTRY_CONVERSATION].data == RECOMMENDED_CONVERSATION_OPTIONS
    assert subentries[SUBENTRY_AI_TASK].data == RECOMMENDED_AI_TASK_OPTIONS

    # The same server again is a duplicate.
    result = await _start(hass, SERVICE_LLAMA)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_tools_server.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.usefixtures("mock_setup_entry")
async def test_llama_template_without_tools(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """A chat template without tools is a warning the user can accept."""
    result = await _start(hass, SERVICE_LLAMA)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_chat_server.url}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "template_without_tools"
    assert result["description_placeholders"] == {
        "model": "smollm2-135m-instruct-q4_1.gguf"
    }
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_URL] == llama_chat_server.url


@pytest.mark.parametrize(
    ("server", "user_input", "error"),
    [
        ("llama_key_server", {}, "invalid_auth"),
        ("llama_key_server", {CONF_API_KEY: "wrong"}, "invalid_auth"),
        ("plain_http_server", {}, "not_llama_server"),
        (None, {}, "cannot_connect"),
    ],
)
async def test_llama_errors_then_recover(
    hass: HomeAssistant,
    request: pytest.FixtureRequest,
    mock_setup_entry: AsyncMock,
    server: str | None,
    user_input: dict[str, str],
    error: str,
) -> None:
    """Each failure gives its error, keeps the input, and a good answer then works."""
    url = (
        request.getfixturevalue(server).url
        if server
        else f"http://127.0.0.1:{free_port()}"
    )
    result = await _start(hass, SERVICE_LLAMA)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: url, **user_input}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    assert mock_setup_entry.call_count == 0

    good: Backend = request.getfixturevalue("llama_key_server")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: good.url, CONF_API_KEY: API_KEY}
    )
    assert result["type"] is FlowResultType.FORM  # SmolLM: no tools in its template
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_API_KEY] == API_KEY


async def test_llama_url_with_credentials_is_refused(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, llama_key_server: Backend
) -> None:
    """User-info in the URL is refused before any request; the key field works."""
    host = llama_key_server.url.removeprefix("http://")
    result = await _start(hass, SERVICE_LLAMA)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://me:{API_KEY}@{host}"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_URL: "url_with_credentials"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_key_server.url, CONF_API_KEY: API_KEY}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]

    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={
            "source": config_entries.SOURCE_RECONFIGURE,
            "entry_id": entry.entry_id,
        },
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://me:{API_KEY}@{host}"}
    )
    assert result["errors"] == {CONF_URL: "url_with_credentials"}
    assert API_KEY not in str(entry.unique_id)
    assert mock_setup_entry.call_count == 1

    # An add-on announcing a host with user-info is refused as well.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery(
            {
                CONF_SERVICE: SERVICE_LLAMA,
                CONF_HOST: f"me:{API_KEY}@{llama_key_server.host}",
                CONF_PORT: llama_key_server.port + 1,
            }
        ),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "url_with_credentials"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("service", "fixture", "title"),
    [(SERVICE_ASR, "asr_server", "whisper.cpp"), (SERVICE_TTS, "tts_server", "kokoro")],
)
async def test_wyoming(
    hass: HomeAssistant,
    request: pytest.FixtureRequest,
    service: str,
    fixture: str,
    title: str,
) -> None:
    """A Wyoming server offering the service becomes an entry; twice is a duplicate."""
    server: Backend = request.getfixturevalue(fixture)
    result = await _start(hass, service)
    assert result["step_id"] == service
    user_input = {CONF_HOST: server.host, CONF_PORT: server.port}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == title
    assert result["data"] == {CONF_SERVICE: service, **user_input}

    result = await _start(hass, service)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.parametrize(
    ("service", "wrong", "error"),
    [
        (SERVICE_ASR, "tts_server", "no_asr_service"),
        (SERVICE_TTS, "asr_server", "no_tts_service"),
        (SERVICE_ASR, None, "cannot_connect"),
        (SERVICE_TTS, "llama_chat_server", "cannot_connect"),
    ],
)
async def test_wyoming_errors_then_recover(
    hass: HomeAssistant,
    request: pytest.FixtureRequest,
    mock_setup_entry: AsyncMock,
    service: str,
    wrong: str | None,
    error: str,
) -> None:
    """The wrong service, nothing listening, or an HTTP server: clear errors."""
    port = request.getfixturevalue(wrong).port if wrong else free_port()
    result = await _start(hass, service)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}

    right: Backend = request.getfixturevalue(f"{service}_server")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: right.host, CONF_PORT: right.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mock_setup_entry.call_count == 1


def _discovery(config: dict[str, Any], name: str = "llama-server") -> HassioServiceInfo:
    return HassioServiceInfo(
        config=config, name=name, slug="local_voice_addon", uuid="1234"
    )


@pytest.mark.usefixtures("mock_setup_entry")
async def test_hassio_llama_server(
    hass: HomeAssistant, llama_key_server: Backend
) -> None:
    """The llama-server add-on's announcement configures it with its key."""
    config = {
        CONF_SERVICE: SERVICE_LLAMA,
        CONF_HOST: llama_key_server.host,
        CONF_PORT: llama_key_server.port,
        CONF_API_KEY: API_KEY,
    }
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery(config),
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "llama-server"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "template_without_tools"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "llama-server"
    assert result["data"] == {
        CONF_SERVICE: SERVICE_LLAMA,
        CONF_URL: llama_key_server.url,
        CONF_API_KEY: API_KEY,
    }

    # Announced again with a new key: the entry is updated, not duplicated.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery({**config, CONF_API_KEY: "rotated"}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    assert entry.data[CONF_API_KEY] == "rotated"


@pytest.mark.usefixtures("mock_setup_entry")
@pytest.mark.parametrize(
    ("service", "fixture"), [(SERVICE_ASR, "asr_server"), (SERVICE_TTS, "tts_server")]
)
async def test_hassio_wyoming(
    hass: HomeAssistant, request: pytest.FixtureRequest, service: str, fixture: str
) -> None:
    """The whisper.cpp and Kokoro add-ons configure themselves after a confirm."""
    server: Backend = request.getfixturevalue(fixture)
    config = {CONF_SERVICE: service, CONF_HOST: server.host, CONF_PORT: server.port}
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery(config, name=fixture),
    )
    assert result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == fixture
    assert result["data"] == config


async def test_hassio_errors(hass: HomeAssistant, asr_server: Backend) -> None:
    """Unknown services abort; an add-on that stopped answering shows an error."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery({CONF_SERVICE: "wake", CONF_HOST: "x", CONF_PORT: 1}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unknown_service"

    config = {CONF_SERVICE: SERVICE_TTS, CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery(config),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    config = {**config, CONF_PORT: asr_server.port}
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=_discovery(config),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "no_tts_service"}


async def test_reconfigure_wyoming(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    asr_server: Backend,
    tts_server: Backend,
) -> None:
    """A Wyoming entry moves to a new port only when the new one offers the service."""
    entry = wyoming_entry(SERVICE_ASR, free_port())
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: tts_server.port}
    )
    assert result["errors"] == {"base": "no_asr_service"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: asr_server.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == asr_server.port
    assert entry.unique_id == f"asr-127.0.0.1-{asr_server.port}"


async def test_reconfigure_llama_server(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    llama_tools_server: Backend,
    llama_chat_server: Backend,
) -> None:
    """A llama entry moves to another server, keeping its subentries."""
    other = llama_entry(llama_chat_server.url)
    other.add_to_hass(hass)
    entry = llama_entry(f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    subentries = dict(entry.subentries)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"http://127.0.0.1:{free_port()}"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    # Taking another entry's server is refused.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_chat_server.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: llama_tools_server.url}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {CONF_SERVICE: SERVICE_LLAMA, CONF_URL: llama_tools_server.url}
    assert entry.subentries == subentries


async def test_reauth(hass: HomeAssistant, llama_key_server: Backend) -> None:
    """A refused key starts reauthentication; the right key loads the entry."""
    entry = await setup_entry(
        hass, llama_entry(llama_key_server.url, **{CONF_API_KEY: "old"})
    )
    assert entry.state is config_entries.ConfigEntryState.SETUP_ERROR
    (flow,) = hass.config_entries.flow.async_progress()
    assert flow["context"]["source"] == config_entries.SOURCE_REAUTH
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_KEY: "still wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_KEY: API_KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_API_KEY] == API_KEY
    assert entry.state is config_entries.ConfigEntryState.LOADED


async def test_subentries(hass: HomeAssistant, llama_tools_server: Backend) -> None:
    """Conversation agents and AI task entities are added and reconfigured."""
    entry = await setup_entry(hass, llama_entry(llama_tools_server.url))
    assert entry.state is config_entries.ConfigEntryState.LOADED
    options = {
        CONF_PROMPT: "You are a terse butler.",
        CONF_LLM_HASS_API: [],
        CONF_TEMPERATURE: 0.2,
        CONF_TOP_P: 0.9,
        CONF_MAX_TOKENS: 64,
        CONF_REASONING_EFFORT: "low",
        CONF_SEND_REASONING: True,
        CONF_MAX_HISTORY: 4,
    }
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CONVERSATION),
        context={"source": config_entries.SOURCE_USER},
    )
    assert result["step_id"] == "init"
    schema = result["data_schema"].schema
    name = next(key for key in schema if key == CONF_NAME)
    assert name.default() == DEFAULT_CONVERSATION_NAME
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "Kitchen butler", **options}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Kitchen butler"
    expected = {k: v for k, v in options.items() if k != CONF_LLM_HASS_API}
    assert result["data"] == expected
    await hass.async_block_till_done()  # the entry reloads with its new agent
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert hass.states.get("conversation.kitchen_butler") is not None

    ai_task = next(
        s for s in entry.subentries.values() if s.subentry_type == SUBENTRY_AI_TASK
    )
    result = await entry.start_subentry_reconfigure_flow(hass, ai_task.subentry_id)
    schema = result["data_schema"].schema
    assert CONF_PROMPT not in schema
    assert next(key for key in schema if key == CONF_NAME).default() == ai_task.title
    new = {**RECOMMENDED_AI_TASK_OPTIONS, CONF_MAX_TOKENS: 200}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "Summaries", **new}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.subentries[ai_task.subentry_id].data == new
    assert entry.subentries[ai_task.subentry_id].title == "Summaries"
    await hass.async_block_till_done()
    assert len(entry.subentries) == 3


async def test_subentry_needs_loaded_entry(hass: HomeAssistant) -> None:
    """Options need the running server (the tool list): abort while it is down."""
    entry = llama_entry(f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CONVERSATION),
        context={"source": config_entries.SOURCE_USER},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_loaded"


async def test_wyoming_entries_have_no_subentries(hass: HomeAssistant) -> None:
    """Speech servers carry no agents."""
    entry = wyoming_entry(SERVICE_TTS, free_port())
    entry.add_to_hass(hass)
    assert entry.supported_subentry_types == {}
