"""The add-ons' copies of integration code are their source, as the script writes it."""

from __future__ import annotations

import pytest

from scripts.addon_copies import COPIES, ROOT, expected


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_copy_equals_its_source(copy: str) -> None:
    """Edit the source, then run `.venv/bin/python scripts/addon_copies.py`."""
    assert (ROOT / copy).read_text(encoding="utf-8") == expected(copy)
