"""Wyoming protocol code: one connection type, audio conversion, STT and TTS.

Nothing in this package knows about Home Assistant entities. Every failure is a
`WyomingError` whose message names the server.
"""
