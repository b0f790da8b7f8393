"""Fixtures for the add-on tests: plain pytest, loopback sockets, no Home Assistant."""

from __future__ import annotations

import pytest
import pytest_socket


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Replace the integration tests' autouse fixture: add-ons need no `hass`."""


@pytest.fixture(autouse=True)
def addon_loopback_sockets() -> None:
    """Allow sockets to loopback only (hub stand-in, llama-server, Wyoming servers).

    pytest-homeassistant-custom-component disables sockets before every test.
    """
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1"], allow_unix_socket=True)
