"""Tests of the add-on repository in addons/ (no Home Assistant needed)."""
