"""Realistic synthetic Commercial-98K corpora for tests and benchmarks.

``make_labelled_corpus`` writes a valid clips manifest plus feature files (through
``FeatureStore``) in which the features carry learnable structure:

* every music track has a latent vector; clips of a track share it, and tracks are mostly used
  within one category (music reuse, as in real ads);
* frame embeddings = projection of (music latent + category latent) + noise, audio embeddings =
  projection of the music latent + noise, so a model can learn video -> music;
* valence/arousal and emotion probabilities are functions of the music latent;
* text tags are drawn from the category's keywords; tag embeddings are fixed per tag word;
* a few videos are near-duplicates of each other (shared ``dup_group``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from commercial98k.label.gems import GEMS9
from commercial98k.manifest.io import write_manifest
from commercial98k.models.registry import ModelInfo
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.taxonomy import load_taxonomy

GEMS = GEMS9
DEFAULT_DIMS = {"frames": 32, "audio": 24, "tags": 16, "latent": 8}

AUDIO_INFO = ModelInfo("synth-audio", "0.1", "a" * 64)
FRAME_INFO = ModelInfo("synth-frames", "0.1", "b" * 64)
TEXT_INFO = ModelInfo("synth-text", "0.1", "c" * 64)
EMOTION_INFO = ModelInfo("synth-emotion", "0.1", "d" * 64)


def _word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha1(word.encode("utf-8")).digest()[:4], "little")
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


def make_labelled_corpus(tmp_path: str | os.PathLike, n_clips: int = 120, categories: list[str] | None = None,
                         dims: dict[str, int] | None = None, seed: int = 0, clips_per_video: int = 2,
                         music_reuse: float = 2.5, dup_share: float = 0.05, failed_share: float = 0.05,
                         manifest_name: str = "c98k.parquet") -> tuple[Path, Path]:
    """Write a labelled clips manifest and its feature files under ``tmp_path``.

    Returns ``(manifest_path, data_root)``. ``music_reuse`` is the mean number of clips per
    music track; ``failed_share`` of the clips get a non-ok status with an ``error``.
    """
    tmp_path = Path(tmp_path)
    rng = np.random.default_rng(seed)
    taxonomy = load_taxonomy()
    categories = list(categories or taxonomy.ids()[:4])
    d = {**DEFAULT_DIMS, **(dims or {})}
    data_root = tmp_path / "data"
    store = FeatureStore(data_root)

    latent = d["latent"]
    proj_v = rng.normal(size=(latent, d["frames"])) / np.sqrt(latent)
    proj_a = rng.normal(size=(latent, d["audio"])) / np.sqrt(latent)
    proj_e = rng.normal(size=(latent, len(GEMS) + 2))
    cat_latent = {c: rng.normal(size=latent) for c in categories}

    n_music = max(1, int(round(n_clips / music_reuse)))
    music_cat = [categories[i % len(categories)] for i in range(n_music)]
    music_latent = [cat_latent[c] * 0.5 + rng.normal(size=latent) for c in music_cat]
    by_cat = {c: [m for m in range(n_music) if music_cat[m] == c] for c in categories}

    n_videos = max(1, (n_clips + clips_per_video - 1) // clips_per_video)
    rows: list[dict] = []
    for v in range(n_videos):
        category = categories[v % len(categories)]
        video_id = f"synth-v{v:05d}"
        if v % 2 == 0:  # videos 2k and 2k+1 are near-duplicates with probability 2 * dup_share
            dup_group = f"dup-{v // 2:05d}" if rng.random() < dup_share * 2 else None
        n_here = min(clips_per_video, n_clips - len(rows))
        video_dur = 10.0 * n_here + 5.0
        keywords = [k for k in taxonomy.get(category).keywords if k.isascii()][:8]
        for ci in range(n_here):
            clip_id = f"{video_id}-c{ci:03d}"
            # mostly a track of the video's category, sometimes any track
            pool = by_cat[category] if rng.random() < 0.85 and by_cat[category] else range(n_music)
            m = int(rng.choice(list(pool)))
            z = music_latent[m] + 0.1 * rng.normal(size=latent)
            start = 10.0 * ci + 1.0
            length = float(rng.uniform(4.0, 10.0))
            row = {
                "video_id": video_id, "platform": "synthetic", "platform_id": f"v{v:05d}",
                "title": f"{category} ad {v}", "category": category, "duration_s": video_dur,
                "status": "ok", "has_audio": True, "width": 640, "height": 360, "fps": 25.0,
                "clip_id": clip_id, "clip_index": ci, "clip_start_s": start, "clip_end_s": start + length,
                "has_music": True, "music_ratio": 0.9, "music_id": f"synth-m{m:05d}",
                "music_start_s": start, "music_end_s": start + length, "dup_group": dup_group,
                "clip_path": f"clips/{clip_id}.mp4", "audio_path": f"audio/{clip_id}.wav",
                "category_confidence": float(rng.uniform(0.3, 1.0)), "predicted_category": category,
                "audio_model": AUDIO_INFO.tag(), "frame_model": FRAME_INFO.tag(),
                "emotion_model": EMOTION_INFO.tag(), "text_model": TEXT_INFO.tag(),
            }
            if rng.random() < failed_share:
                row.update(status="failed", error=rng.choice(["MediaError: no video stream",
                                                              "TimeoutError: ffmpeg timed out"]))
                rows.append(row)
                continue
            e = np.tanh(0.5 * z @ proj_e / np.sqrt(latent))
            probs = np.exp(3 * e[2:]) / np.exp(3 * e[2:]).sum()
            t_v, t_a = int(rng.integers(6, 20)), int(rng.integers(8, 30))
            frames = (z + cat_latent[category]) @ proj_v + 0.3 * rng.normal(size=(t_v, d["frames"]))
            audio = z @ proj_a + 0.3 * rng.normal(size=(t_a, d["audio"]))
            tags = sorted(set(rng.choice(keywords, size=int(rng.integers(0, 4)), replace=True).tolist()))
            tag_emb = np.stack([_word_vector(t, d["tags"]) for t in tags]) if tags else np.zeros((0, d["tags"]))
            row.update(
                valence=float(e[0]), arousal=float(e[1]), emotion=GEMS[int(np.argmax(probs))],
                emotion_probs={g: float(p) for g, p in zip(GEMS, probs, strict=True)}, tags=tags,
                frame_embedding=store.put("frames", FRAME_INFO.key(), clip_id, frames),
                audio_embedding=store.put("audio", AUDIO_INFO.key(), clip_id, audio),
                tag_embedding=store.put("tags", TEXT_INFO.key(), clip_id, tag_emb, dtype="float32"),
            )
            rows.append(row)
    manifest = tmp_path / "manifests" / manifest_name
    write_manifest(rows, manifest, kind="clips")
    return manifest, data_root
