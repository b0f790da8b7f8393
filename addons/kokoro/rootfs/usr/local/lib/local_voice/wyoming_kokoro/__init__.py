"""Wyoming text-to-speech server for Kokoro-82M (the local_voice Kokoro add-on)."""
