"""``c98k browse``: a local web app over a clips manifest (``app``), its index and queries, served files."""
