"""The one definition of the GEMS emotion classes and of the emotion vector layout.

* ``GEMS9``: the nine GEMS emotions in Emotify's column order (Zentner et al. 2008 GEMS-9,
  Emotify's names). The emotion head, the data-set loaders, the shards and YuYin all use it.
* The emotion vector (``emotion.npy`` in a shard, ``GemsHead.to_vector``) is float32
  ``[valence, arousal, p_1 .. p_K]`` with the class probabilities in ``classes`` order;
  missing values are 0.

Pure numpy; importable from ``models`` and ``label`` alike (no other project imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

GEMS9: tuple[str, ...] = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
                          "joyful_activation", "tension", "sadness")
"""The nine GEMS emotions in Emotify's column order."""

VECTOR_PREFIX = ("valence", "arousal")
"""The first entries of an emotion vector; the class probabilities follow."""


def emotion_vector(valence: float | None, arousal: float | None, probs: Mapping[str, float] | None,
                   classes: Iterable[str]) -> np.ndarray:
    """float32 ``[valence, arousal, p_1..p_K]`` in ``classes`` order; missing values are 0."""
    probs = dict(probs or {})
    vals = [valence or 0.0, arousal or 0.0] + [probs.get(c, 0.0) or 0.0 for c in classes]
    return np.asarray(vals, dtype=np.float32)


def row_emotion_vector(row: Mapping, classes: Iterable[str]) -> np.ndarray:
    """``emotion_vector`` of a manifest row (``valence``, ``arousal``, ``emotion_probs``)."""
    return emotion_vector(row.get("valence"), row.get("arousal"), row.get("emotion_probs"), classes)


def emotion_classes(rows: Iterable[Mapping]) -> list[str]:
    """Class order of the rows' ``emotion_probs``: the GEMS order when all are GEMS classes, else sorted."""
    keys: set[str] = set()
    for r in rows:
        keys.update(dict(r.get("emotion_probs") or {}))
    if keys and keys <= set(GEMS9):
        return [g for g in GEMS9 if g in keys]
    return sorted(keys)
