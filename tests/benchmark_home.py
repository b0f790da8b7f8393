"""The benchmarks' realistic home (benchmarks/home.py) as a test fixture.

Tests of the benchmarks' judges and of the agent's tool choice use the same home,
set up in the test's Home Assistant, in its initial state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
import sys

import pytest

from homeassistant.core import HomeAssistant

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from home import Home, async_setup_home


@pytest.fixture
async def home(hass: HomeAssistant, tmp_path: Path) -> AsyncIterator[Home]:
    """The home, set up; its timers cancelled after the test."""
    # The shopping list keeps its items in a file of the configuration folder.
    hass.config.config_dir = str(tmp_path)
    home = await async_setup_home(hass)
    yield home
    await home.reset()
