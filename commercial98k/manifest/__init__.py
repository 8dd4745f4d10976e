"""Parquet manifests: the schema, reading and writing parts, compaction, scans, locks and status."""
