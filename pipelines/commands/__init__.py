"""One module per ``c98k`` command; each exposes ``command`` (a click command or group)."""
