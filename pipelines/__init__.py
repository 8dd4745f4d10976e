"""Commercial-98K stages (fetch, split, label, build-shards, stats) and the ``c98k`` CLI."""
