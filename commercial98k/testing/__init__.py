"""Fixtures for tests, benchmarks and the offline demo (a loopback shop server).

Nothing in the core library imports this package; only ``tests/``, ``benchmarks/`` and
``commercial98k/demo`` do.
"""
