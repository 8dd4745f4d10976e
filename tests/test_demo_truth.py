"""The benchmark corpus checks music identity against the tracks it played, and splits on the true tracks."""

from __future__ import annotations

import pyarrow as pa

from commercial98k.demo.truth import identity_agreement, true_music_id, true_track_ids

CORPUS = {"videos": [{"file": "food-000.mp4", "track_id": "A"}, {"file": "food-001.mp4", "track_id": "A"},
                     {"file": "pets-000.mp4", "track_id": "B"}, {"file": "pets-001.mp4", "track_id": "C"}]}


def _clips(platform_ids: list[str], music_ids: list[str | None]) -> pa.Table:
    return pa.table({"clip_id": [f"c{i}" for i in range(len(platform_ids))], "platform_id": platform_ids,
                     "music_id": pa.array(music_ids, pa.string())})


def test_identity_is_scored_against_the_true_tracks():
    # track A split over two ids; id m-2 holds tracks A and B (a false merge); C alone
    clips = _clips(["food-000", "food-001", "pets-000", "pets-001", "other-9"], ["m-1", "m-2", "m-2", "m-3", "m-9"])
    assert identity_agreement(clips, CORPUS) == {"ids": 3, "tracks": 3, "mixed_ids": 1, "split_tracks": 1}
    perfect = _clips(["food-000", "food-001", "pets-000"], ["m-1", "m-1", "m-2"])
    assert identity_agreement(perfect, CORPUS) == {"ids": 2, "tracks": 2, "mixed_ids": 0, "split_tracks": 0}


def test_true_track_ids_replace_only_identified_clips_of_known_videos():
    clips = _clips(["food-000", "food-001", "pets-000", "pets-001", "other-9"], ["m-1", "m-2", "m-2", None, "m-9"])
    out = true_track_ids(clips, CORPUS)
    assert out.schema == clips.schema and out.column("clip_id") == clips.column("clip_id")
    ids = out.column("music_id").to_pylist()
    assert ids[0] == ids[1] == true_music_id("A") != ids[2] == true_music_id("B")
    assert ids[3] is None and ids[4] == "m-9"  # no music stays no music; an unknown video keeps its id
    assert identity_agreement(out, CORPUS)["split_tracks"] == 0
