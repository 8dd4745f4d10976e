"""What the emotion branch could give at best and at worst: the oracle and the shuffled emotion input.

The benchmark's emotion runs train and test full YuYin with its emotion input replaced, in
every split, before training (the trainer itself never reads the truth):

* ``yuyin-oracle-emotion``: each clip's emotion vector is its true track's mood label turned into
  the vector the emotion head produces (``commercial98k.label.gems``: ``[valence, arousal,
  p_1 .. p_K]``): the GEMS emotions the mood stands for (``demo.music.MOOD_GEMS``) share the
  probability equally, and valence/arousal are their expected circumplex coordinates
  (``emotion_head.va_of_gems``). The moods come from ``--track-moods``: the demo catalog's
  ``corpus.json`` (via ``demo.truth.true_track_moods``) or a plain ``{music_id: mood}`` JSON.
* ``yuyin-shuffled-emotion``: the learned head's vectors permuted across the split's clips, so a
  clip's emotion says nothing about its track (the same vectors, in another order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.errors import C98kError

#: method -> how its emotion input is made
EMOTION_INPUTS = {"yuyin-oracle-emotion": "oracle", "yuyin-shuffled-emotion": "shuffled"}
#: a fixed permutation seed per split: the shuffled input is data, the same for every training seed
_SHUFFLE_SEED = {"train": 11, "val": 12, "test": 13}


class EmotionInputError(C98kError, ValueError):
    """The track moods are missing, unreadable or do not cover a clip's track."""


def load_track_moods(path: str | os.PathLike) -> dict[str, str]:
    """``music_id -> mood`` from a demo catalog's ``corpus.json`` or a ``{music_id: mood}`` JSON file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmotionInputError(f"{p}: cannot read the track moods ({e})") from e
    if isinstance(doc, dict) and isinstance(doc.get("videos"), list):
        from commercial98k.demo.truth import true_track_moods

        moods = true_track_moods(doc)
    elif isinstance(doc, dict) and all(isinstance(v, str) for v in doc.values()):
        moods = dict(doc)
    else:
        raise EmotionInputError(f"{p}: neither a demo corpus.json nor a {{music_id: mood}} mapping")
    if not moods:
        raise EmotionInputError(f"{p}: no track has a mood label")
    return moods


def mood_vector(mood: str, classes: list[str]) -> np.ndarray:
    """The emotion-head vector ``[valence, arousal, p_1..p_K]`` (``classes`` order) a mood label stands for."""
    from commercial98k.demo.music import MOOD_GEMS
    from commercial98k.label.gems import emotion_vector
    from commercial98k.models.emotion_head import va_of_gems

    gems = MOOD_GEMS.get(mood)
    if gems is None:
        raise EmotionInputError(f"mood {mood!r} has no GEMS emotions; known: {', '.join(sorted(MOOD_GEMS))}")
    probs = {g: 1.0 / len(gems) for g in gems}
    in_layout = [probs.get(c, 0.0) for c in classes]
    if not any(in_layout):
        raise EmotionInputError(f"mood {mood!r} stands for {', '.join(gems)}, none of the shards' emotion "
                                f"classes ({', '.join(classes)})")
    valence, arousal = (float(x) for x in va_of_gems(np.asarray(in_layout), classes))
    return emotion_vector(valence, arousal, probs, classes)


def oracle_emotion(samples: list[dict[str, Any]], moods: dict[str, str], classes: list[str]) -> list[dict[str, Any]]:
    """``samples`` (shallow copies) whose emotion is their track's true mood as a head vector."""
    cache: dict[str, np.ndarray] = {}
    out = []
    for s in samples:
        mid = s["meta"].get("music_id")
        if mid not in moods:
            raise EmotionInputError(f"clip {s['clip_id']}: its track {mid} has no mood in --track-moods (the "
                                    "oracle needs the corpus the shards were built from, on the true track ids)")
        if moods[mid] not in cache:
            cache[moods[mid]] = mood_vector(moods[mid], classes)
        vec = cache[moods[mid]]
        if vec.shape != np.shape(s["emotion"]):
            raise EmotionInputError(f"clip {s['clip_id']}: shard emotion vectors have shape {np.shape(s['emotion'])}, "
                                    f"the mood vector {vec.shape}; the shards' emotion_classes do not match")
        out.append({**s, "emotion": vec.copy()})
    return out


def shuffled_emotion(samples: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """``samples`` (shallow copies) with their emotion vectors permuted across the split (fixed per split)."""
    order = np.random.default_rng(_SHUFFLE_SEED.get(split, 14)).permutation(len(samples))
    return [{**s, "emotion": samples[int(j)]["emotion"]} for s, j in zip(samples, order, strict=True)]


def emotion_splits(method: str, splits: dict[str, list[dict[str, Any]]], moods: dict[str, str] | None,
                   classes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every split with ``method``'s emotion input (unchanged for a method without one)."""
    kind = EMOTION_INPUTS.get(method)
    if kind is None:
        return splits
    if kind == "oracle":
        if not moods:
            raise EmotionInputError(f"{method} needs the tracks' moods: pass --track-moods "
                                    "(the benchmark corpus's catalog/corpus.json)")
        return {name: oracle_emotion(s, moods, classes) for name, s in splits.items()}
    return {name: shuffled_emotion(s, name) for name, s in splits.items()}
