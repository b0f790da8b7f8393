"""llama-server protocol code: the HTTP client and what reads its answers.

Nothing in this package knows about Home Assistant entities; each module is usable
(and tested) on its own.
"""
