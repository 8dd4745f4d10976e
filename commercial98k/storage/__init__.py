"""Files on disk: atomic writes, hashing, safe names and the per-clip feature store."""
