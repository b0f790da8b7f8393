"""Config flow for Local Voice: one entry per backend server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import probatio as vol

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryData,
    ConfigSubentryFlow,
)
from homeassistant.const import (
    CONF_API_KEY,
    CONF_HOST,
    CONF_PORT,
    CONF_URL,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

from .const import (
    CONF_MODEL,
    CONF_SERVICE,
    DEFAULT_AI_TASK_NAME,
    DEFAULT_ASR_PORT,
    DEFAULT_CONVERSATION_NAME,
    DEFAULT_LLAMA_URL,
    DEFAULT_TTS_PORT,
    DOMAIN,
    LOGGER,
    RECOMMENDED_AI_TASK_OPTIONS,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SERVICE_ASR,
    SERVICE_LLAMA,
    SERVICE_TTS,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from .llama_server.client import LlamaServerClient
from .llama_server.errors import InvalidAuth, LlamaServerError, NotLlamaServer
from .llama_server.props import ServerProps
from .llama_server.url import has_user_info, strip_user_info
from .subentry_flow import LlamaSubentryFlow
from .wyoming_client.errors import WyomingError
from .wyoming_client.server import WyomingServer, installed_programs

NO_SERVICE_ERROR: Final = {SERVICE_ASR: "no_asr_service", SERVICE_TTS: "no_tts_service"}


def _llama_schema(url: str = DEFAULT_LLAMA_URL) -> vol.Schema:
    """Return the llama-server form; the key is a password field."""
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=url): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            vol.Optional(CONF_API_KEY): TextSelector(
                TextSelectorConfig(type=TextSelectorType.PASSWORD)
            ),
        }
    )


def _wyoming_schema(port: int) -> vol.Schema:
    """Return the Wyoming server form."""
    return vol.Schema(
        {
            vol.Required(CONF_HOST): str,
            vol.Required(CONF_PORT, default=port): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=65535)
            ),
        }
    )


async def _async_check_llama(
    hass: HomeAssistant, data: Mapping[str, Any]
) -> tuple[ServerProps | None, dict[str, str]]:
    """Validate a llama-server: /health, /v1/models, /props."""
    client = LlamaServerClient(
        async_get_clientsession(hass), data[CONF_URL], data.get(CONF_API_KEY)
    )
    try:
        return await client.async_get_props(), {}
    except InvalidAuth:
        return None, {"base": "invalid_auth"}
    except NotLlamaServer as err:
        LOGGER.debug("%s is not llama-server: %s", strip_user_info(data[CONF_URL]), err)
        return None, {"base": "not_llama_server"}
    except LlamaServerError as err:
        LOGGER.debug("Cannot connect to %s: %s", strip_user_info(data[CONF_URL]), err)
        return None, {"base": "cannot_connect"}


async def _async_check_wyoming(
    service: str, host: str, port: int
) -> tuple[str | None, dict[str, str]]:
    """Validate a Wyoming server offers the service; return its program's name."""
    server = WyomingServer(host, port)
    try:
        info = await server.async_describe()
    except WyomingError as err:
        LOGGER.debug("Cannot describe %s: %s", server, err)
        return None, {"base": "cannot_connect"}
    if not (programs := installed_programs(info, service)):
        return None, {"base": NO_SERVICE_ERROR[service]}
    return programs[0].name, {}


def _llama_unique_id(url: str) -> str:
    """Identify a llama-server by its normalized URL (never with user-info)."""
    return strip_user_info(url.strip()).rstrip("/").lower()


def _url_errors(url: str) -> dict[str, str]:
    """Refuse user-info in the URL: the API key field is the place for a secret."""
    return {CONF_URL: "url_with_credentials"} if has_user_info(url) else {}


def _wyoming_unique_id(service: str, host: str, port: int) -> str:
    """Identify a Wyoming service by kind and address."""
    return f"{service}-{host.strip().lower()}-{port}"


def _default_subentries(model: str | None) -> list[ConfigSubentryData]:
    """Give a new entry an agent and an AI task (a router's: on the model it picks)."""
    chosen = {CONF_MODEL: model} if model else {}
    return [
        ConfigSubentryData(
            subentry_type=SUBENTRY_CONVERSATION,
            data={**RECOMMENDED_CONVERSATION_OPTIONS, **chosen},
            title=DEFAULT_CONVERSATION_NAME,
            unique_id=None,
        ),
        ConfigSubentryData(
            subentry_type=SUBENTRY_AI_TASK,
            data={**RECOMMENDED_AI_TASK_OPTIONS, **chosen},
            title=DEFAULT_AI_TASK_NAME,
            unique_id=None,
        ),
    ]


class LocalVoiceConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a llama-server, a Wyoming ASR server or a Wyoming TTS server."""

    VERSION = 1
    MINOR_VERSION = 2

    def __init__(self) -> None:
        """Hold what a multi-step flow learns between steps."""
        self._data: dict[str, Any] = {}
        self._title = ""
        #: On a router: the model the new entry's agent and AI task name.
        self._model: str | None = None
        self._discovery: HassioServiceInfo | None = None

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask which kind of server to add."""
        return self.async_show_menu(
            step_id="user", menu_options=[SERVICE_LLAMA, SERVICE_ASR, SERVICE_TTS]
        )

    async def async_step_llama_server(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add a llama-server."""
        errors: dict[str, str] = {}
        if user_input is not None and not (errors := _url_errors(user_input[CONF_URL])):
            await self.async_set_unique_id(_llama_unique_id(user_input[CONF_URL]))
            self._abort_if_unique_id_configured()
            props, errors = await _async_check_llama(self.hass, user_input)
            if props is not None:
                return await self._async_finish_llama(
                    {CONF_SERVICE: SERVICE_LLAMA, **user_input}, props
                )
        return self.async_show_form(
            step_id=SERVICE_LLAMA,
            data_schema=self.add_suggested_values_to_schema(
                _llama_schema(), user_input
            ),
            errors=errors,
        )

    async def _async_finish_llama(
        self, data: dict[str, Any], props: ServerProps
    ) -> ConfigFlowResult:
        """Create the entry, or first warn when the chat template has no tools."""
        self._data = data
        self._title = self._title or props.model
        self._model = props.model_for(None)
        if not props.supports_tools and not props.router:
            return await self.async_step_template_without_tools()
        return self._async_create_llama_entry()

    async def async_step_template_without_tools(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Warn that Assist cannot control devices with this chat template."""
        if user_input is not None:
            return self._async_create_llama_entry()
        return self.async_show_form(
            step_id="template_without_tools",
            description_placeholders={"model": self._title},
        )

    @callback
    def _async_create_llama_entry(self) -> ConfigFlowResult:
        """Create a llama-server entry with its default subentries."""
        return self.async_create_entry(
            title=self._title,
            data=self._data,
            subentries=_default_subentries(self._model),
        )

    async def async_step_asr(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add a Wyoming speech-to-text server."""
        return await self._async_step_wyoming(SERVICE_ASR, DEFAULT_ASR_PORT, user_input)

    async def async_step_tts(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add a Wyoming text-to-speech server."""
        return await self._async_step_wyoming(SERVICE_TTS, DEFAULT_TTS_PORT, user_input)

    async def _async_step_wyoming(
        self, service: str, port: int, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        """Validate and add one Wyoming service."""
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST], user_input[CONF_PORT]
            await self.async_set_unique_id(_wyoming_unique_id(service, host, port))
            self._abort_if_unique_id_configured()
            name, errors = await _async_check_wyoming(service, host, port)
            if name is not None:
                return self.async_create_entry(
                    title=name,
                    data={CONF_SERVICE: service, CONF_HOST: host, CONF_PORT: port},
                )
        return self.async_show_form(
            step_id=service,
            data_schema=self.add_suggested_values_to_schema(
                _wyoming_schema(port), user_input
            ),
            errors=errors,
        )

    async def async_step_hassio(
        self, discovery_info: HassioServiceInfo
    ) -> ConfigFlowResult:
        """Handle an add-on that announced itself through the Supervisor."""
        config = discovery_info.config
        service = config.get(CONF_SERVICE)
        if service not in (SERVICE_LLAMA, SERVICE_ASR, SERVICE_TTS):
            return self.async_abort(reason="unknown_service")
        host, port = str(config[CONF_HOST]), int(config[CONF_PORT])
        if service == SERVICE_LLAMA:
            url = f"http://{host}:{port}"
            if has_user_info(url):
                return self.async_abort(reason="url_with_credentials")
            self._data = {CONF_SERVICE: service, CONF_URL: url}
            if api_key := config.get(CONF_API_KEY):
                self._data[CONF_API_KEY] = api_key
            unique_id = _llama_unique_id(url)
        else:
            self._data = {CONF_SERVICE: service, CONF_HOST: host, CONF_PORT: port}
            unique_id = _wyoming_unique_id(service, host, port)
        await self.async_set_unique_id(unique_id)
        # An add-on restarted with a new key updates the entry it made before.
        self._abort_if_unique_id_configured(updates=self._data)
        self._discovery = discovery_info
        self.context["title_placeholders"] = {"name": discovery_info.name}
        self.context["configuration_url"] = (
            f"homeassistant://hassio/addon/{discovery_info.slug}/info"
        )
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm a discovered add-on, then validate it like a typed-in server."""
        assert self._discovery is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            self._title = self._discovery.name
            service = self._data[CONF_SERVICE]
            if service == SERVICE_LLAMA:
                props, errors = await _async_check_llama(self.hass, self._data)
                if props is not None:
                    return await self._async_finish_llama(self._data, props)
            else:
                name, errors = await _async_check_wyoming(
                    service, self._data[CONF_HOST], self._data[CONF_PORT]
                )
                if name is not None:
                    return self.async_create_entry(title=self._title, data=self._data)
        return self.async_show_form(
            step_id="hassio_confirm",
            description_placeholders={"addon": self._discovery.name},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point an entry at a new address (or key), keeping its subentries."""
        entry = self._get_reconfigure_entry()
        service = entry.data[CONF_SERVICE]
        errors: dict[str, str] = {}
        if user_input is not None:
            if service == SERVICE_LLAMA:
                unique_id = _llama_unique_id(user_input[CONF_URL])
                errors = _url_errors(user_input[CONF_URL])
                if not errors:
                    _, errors = await _async_check_llama(self.hass, user_input)
            else:
                host, port = user_input[CONF_HOST], user_input[CONF_PORT]
                unique_id = _wyoming_unique_id(service, host, port)
                _, errors = await _async_check_wyoming(service, host, port)
            if not errors:
                await self.async_set_unique_id(unique_id)
                if unique_id != entry.unique_id:
                    self._abort_if_unique_id_configured()
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=unique_id,
                    data={CONF_SERVICE: service, **user_input},
                )
        if service == SERVICE_LLAMA:
            schema = _llama_schema()
        else:
            schema = _wyoming_schema(entry.data[CONF_PORT])
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or entry.data
            ),
            errors=errors,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Start reauthentication when llama-server refuses the API key."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new API key."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, CONF_API_KEY: user_input[CONF_API_KEY]}
            _, errors = await _async_check_llama(self.hass, data)
            if not errors:
                return self.async_update_reload_and_abort(entry, data=data)
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_API_KEY): TextSelector(
                        TextSelectorConfig(type=TextSelectorType.PASSWORD)
                    )
                }
            ),
            description_placeholders={"url": strip_user_info(entry.data[CONF_URL])},
            errors=errors,
        )

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Offer conversation agents and AI task entities on llama-server entries."""
        if config_entry.data.get(CONF_SERVICE) != SERVICE_LLAMA:
            return {}
        return {
            SUBENTRY_CONVERSATION: LlamaSubentryFlow,
            SUBENTRY_AI_TASK: LlamaSubentryFlow,
        }
