"""Agreement of the gems-head with human GEMS ratings on the 160 Emotify excerpts (k-fold CV).

For every metric the table prints the head, the reference predictor measured in the same run
(``mean``: the training-fold mean vote distribution, the same for every test track), a stronger
reference (``group mean``: the training-fold mean of the test track's genre) and the ratio
head/mean. Metrics (out-of-fold, over all 160 tracks):

* ``r share <emotion>``: Pearson correlation between predicted probability and the human vote
  distribution (each emotion's share of the track's votes), per emotion and averaged;
* ``KL(human || pred)``, ``cross-entropy``: to the human vote distribution (lower is better);
* ``top-1 = majority emotion``: argmax prediction equals the emotion with most human votes;
* ``r valence`` / ``r arousal``, RMSE: against the VA derived from the human votes with the same
  circumplex table (``commercial98k.models.emotion_head.GEMS_VA``).

For scale it also prints the human split-half agreement (one half of each track's raters
predicting the other half). A ratio is ``n/a`` where the reference's correlation is not positive (the leave-fold mean is
anti-correlated with the held-out value by construction). Also saves a PNG of predicted vs human
share per emotion.

    .venv/bin/python benchmarks/emotion_emotify.py [--audio-model musicnn] [--seconds 30] [--folds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from commercial98k.label import emotion_training as stage  # noqa: E402
from commercial98k.label.emotion_data import GEMS9  # noqa: E402


def human_split_half(emotify: Path, reps: int = 20, seed: int = 0) -> tuple[float, float, float]:
    """How well one half of the raters predicts the other: mean per-emotion r of vote shares,
    its Spearman-Brown step-up to the full panel, and top-1 agreement (a ceiling for any model)."""
    ratings = pd.read_csv(emotify / "ratings.csv")
    rng = np.random.default_rng(seed)
    rs, tops = [], []
    for _ in range(reps):
        halves = np.zeros((2, ratings["file"].nunique(), len(GEMS9)))
        for t, (_, g) in enumerate(ratings.groupby("file", sort=True)):
            votes = g[list(GEMS9)].to_numpy(float)[rng.permutation(len(g))]
            for h, part in enumerate(np.array_split(votes, 2)):
                halves[h, t] = part.sum(0) / max(part.sum(), 1.0)
        rs.append(np.mean([np.corrcoef(halves[0][:, j], halves[1][:, j])[0, 1] for j in range(len(GEMS9))]))
        tops.append(np.mean(halves[0].argmax(1) == halves[1].argmax(1)))
    r = float(np.mean(rs))
    return r, 2 * r / (1 + r), float(np.mean(tops))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emotify", default=str(ROOT.parent / "shared" / "media" / "emotify"))
    ap.add_argument("--audio-model", default="musicnn")
    ap.add_argument("--seconds", type=float, default=30.0, help="head window (0: whole excerpt)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=str(ROOT / "data" / "emotion_cache"))
    ap.add_argument("--plot", default=str(ROOT / "reports" / "emotion_emotify.png"))
    args = ap.parse_args(argv)

    ds, seqs, model = stage.prepare("emotify", args.emotify, args.audio_model, cache_dir=args.cache_dir)
    window = stage.window_frames_for(args.seconds or None, model.hop_s)
    t0 = time.perf_counter()
    res = stage.cross_validate(ds, seqs, model.info.tag(), window, args.folds, args.seed)
    took = time.perf_counter() - t0
    print(f"Emotify: {len(ds)} excerpts ({', '.join(sorted(set(ds.groups())))}), "
          f"{sum(it.n_ratings for it in ds)} ratings; audio model {model.info.tag()} (dim {model.dim}, "
          f"hop {model.hop_s:.2f} s); head window {args.seconds:g} s = {window} frames; "
          f"{args.folds}-fold CV stratified by genre, seed {args.seed}; CV took {took:.1f} s")
    print(stage.format_table(stage.cv_metrics(res)))
    r_half, r_full, top_half = human_split_half(Path(args.emotify), seed=args.seed)
    print(f"human split-half (raters of each track split in two, 20 draws): r share (mean of 9) {r_half:.3f} "
          f"(Spearman-Brown full panel {r_full:.3f}), top-1 agreement {top_half:.3f}")
    print(f"plot: {stage.plot_shares(res, args.plot)}")


if __name__ == "__main__":
    main()
