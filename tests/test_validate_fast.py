"""``validate_table``'s vectorised pre-check finds exactly the problems of checking every row in Python."""

from __future__ import annotations

import numpy as np

from commercial98k.manifest.schema import _checked_rows, _row_problems, rows_to_table, validate_table


def _random_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)

    def maybe(value, p_none=0.1):
        return None if rng.random() < p_none else value

    rows = []
    for i in range(n):
        dur = float(rng.choice([30.0, 60.0, -1.0], p=[0.5, 0.45, 0.05]))
        a, b = sorted(rng.uniform(-0.2, 65, 2))
        if rng.random() < 0.1:
            a, b = b, a
        shots = [{"start_s": maybe(float(s)), "end_s": maybe(float(s + rng.uniform(-0.5, 3)), 0.02)}
                 for s in rng.uniform(0, 62, rng.integers(0, 4))]
        rows.append({"video_id": f"v{i}", "clip_id": f"v{i}-c000", "duration_s": maybe(dur),
                     "status": str(rng.choice(["ok", "failed", "no_music", "weird"], p=[0.6, 0.2, 0.15, 0.05])),
                     "clip_start_s": maybe(a), "clip_end_s": maybe(b), "music_start_s": maybe(a, 0.5),
                     "music_end_s": maybe(b, 0.5), "shots": maybe(shots), "music_segments": maybe(shots[:1]),
                     "valence": maybe(float(rng.uniform(-1.1, 1.1))), "arousal": maybe(float(rng.uniform(-1.1, 1.1))),
                     "category_confidence": maybe(float(rng.uniform(-0.1, 1.1))),
                     "split": maybe(str(rng.choice(["train", "val", "test", "dev"], p=[0.5, 0.2, 0.2, 0.1])))})
    return rows


def test_the_vectorised_precheck_misses_no_problem():
    for seed in range(5):
        table = rows_to_table(_random_rows(400, seed), "clips")
        keys = table.column("clip_id").to_pylist()
        every_row = [p for i, r in enumerate(_checked_rows(table)) for p in _row_problems(i, r, keys[i])]
        assert every_row, "the generator should make some problems"
        assert validate_table(table, "clips", max_problems=10**6) == every_row
