"""Music features under a voice-over: speech spans from the manifest row, speech-aware emotion pooling."""

from __future__ import annotations

import numpy as np
import pytest

from commercial98k.label import speech_pooling as sp
from commercial98k.models.emotion_head import BUNDLED, GemsHead

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kl(p: dict[str, float], q: dict[str, float]) -> float:
    a = np.clip(np.array([p[k] for k in p]), 1e-9, 1)
    b = np.clip(np.array([q[k] for k in p]), 1e-9, 1)
    return float((a * np.log(a / b)).sum())


def test_row_spans_move_to_clip_time_and_are_cut_to_the_clip():
    row = {"clip_start_s": 10.0, "clip_end_s": 22.0,
           "speech_segments": [{"start_s": 4.0, "end_s": 11.5}, {"start_s": 15.0, "end_s": 16.0},
                               {"start_s": 21.0, "end_s": 30.0}, {"start_s": 40.0, "end_s": 41.0}]}
    assert sp.clip_speech_spans(row) == [(0.0, 1.5), (5.0, 6.0), (11.0, 12.0)]
    assert sp.clip_speech_spans({"clip_start_s": 0.0, "clip_end_s": 5.0}) is None  # an old manifest
    assert sp.clip_speech_spans({**row, "speech_segments": []}) == []
    share = sp.frame_speech_share([(0.0, 1.5), (5.0, 6.0)], 3, 3.0, pad_s=0.0)
    np.testing.assert_allclose(share, [0.5, 1 / 3, 0.0])
    # widened by 1 s each side: (-1, 2.5) and (4, 7); spans that come to overlap count once
    np.testing.assert_allclose(sp.frame_speech_share([(0.0, 1.5), (5.0, 6.0)], 3, 3.0, pad_s=1.0),
                               [2.5 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(sp.frame_speech_share([(1.0, 1.2), (1.4, 1.6)], 1, 3.0, pad_s=1.0), [2.6 / 3])


def test_without_speech_the_emotion_is_todays():
    head = GemsHead.load(BUNDLED)
    seq = np.random.default_rng(0).normal(size=(9, head.audio_dim)).astype(np.float32)
    aware = sp.SpeechAwareEmotion(head, None)
    assert aware.predict(seq, None) == head.predict(seq)
    assert aware.predict(seq, np.zeros(9)) == head.predict(seq)
    voiced = aware.predict(seq, np.r_[np.ones(4), np.zeros(5)])
    assert voiced["probs"] != head.predict(seq)["probs"]
    assert aware.info.name == "gems-head-speech-weighted" and aware.info.weights_sha256 == head.info.weights_sha256


def test_label_models_tag_the_pooling_and_none_keeps_the_old_head():
    from commercial98k.label.extractors import LabelConfig, LabelModels

    weighted = LabelModels(LabelConfig(ocr=False)).emotion
    plain = LabelModels(LabelConfig(ocr=False, speech_pooling="none")).emotion
    assert isinstance(weighted, sp.SpeechAwareEmotion) and weighted.correction is not None
    assert weighted.info.tag().startswith("gems-head-speech-weighted ")
    assert plain.info.tag().startswith("gems-head ")
    with pytest.raises(ValueError, match="speech_pooling 'max'"):
        _ = LabelModels(LabelConfig(ocr=False, speech_pooling="max")).emotion


def test_emotify_under_real_speech_moves_less_with_speech_pooling(shared_media):
    """Held-out Emotify excerpts (one per genre) under held-out speakers' digits at +6 dB, speech
    spans from the VAD as split records them: with the new pooling the emotion and the pooled
    embedding of the mix are closer to the music alone's than with today's."""
    from commercial98k.label.extractors import LabelConfig, LabelModels
    from commercial98k.split.vad import get_vad
    from commercial98k.testing import voiceover as vo

    models = LabelModels(LabelConfig(ocr=False))
    audio, aware, vad = models.audio, models.emotion, get_vad()
    bank = vo.speech_bank(shared_media / "speech")
    rng = np.random.default_rng(3)
    kl_old, kl_new, cos_old, cos_new, voiced = [], [], [], [], []
    for genre, speaker in zip(("classical", "electronic", "pop", "rock"), ("theo", "nicolas", "yweweler", "theo"),
                              strict=True):
        music = vo.load_music(shared_media / "emotify" / "audio" / f"{genre}_31.mp3", 42.0, 12.0)
        mix = vo.mix(music, vo.digit_voice(bank, len(music), 0.75, rng, speaker=speaker), 6.0)
        seqs = {name: audio.embed(x) for name, x in (("music", music), ("mix", mix))}
        share = {name: sp.frame_speech_share(vad.speech_spans(x), len(seqs[name]), audio.hop_s, audio.patch_s)
                 for name, x in (("music", music), ("mix", mix))}
        voiced.append(share["mix"].mean())
        kl_old.append(_kl(aware.head.predict(seqs["music"])["probs"], aware.head.predict(seqs["mix"])["probs"]))
        kl_new.append(_kl(aware.predict(seqs["music"], share["music"])["probs"],
                          aware.predict(seqs["mix"], share["mix"])["probs"]))
        cos_old.append(_cos(seqs["music"].mean(0), seqs["mix"].mean(0)))
        cos_new.append(_cos(sp.pooled_embedding(seqs["music"], share["music"], aware.correction),
                            sp.pooled_embedding(seqs["mix"], share["mix"], aware.correction)))
    assert np.mean(voiced) > 0.3  # the voice is found
    assert np.mean(kl_new) < np.mean(kl_old)
    assert np.mean(cos_new) > np.mean(cos_old)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_correction_fit_recovers_a_known_map_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    true = rng.normal(scale=0.1, size=(6, 5))
    mix = [rng.normal(size=(4, 5)) for _ in range(60)]
    shares = [rng.uniform(0, 1, 4) * (rng.random(4) < 0.7) for _ in range(60)]
    clean = [m + s[:, None] * (np.c_[m, np.ones(4)] @ true) for m, s in zip(mix, shares, strict=True)]
    corr = sp.fit_correction(mix, clean, shares, "toy 1 abc", l2=1e-6)
    np.testing.assert_allclose(corr.apply(mix[0], shares[0]), clean[0], atol=1e-5)
    np.testing.assert_array_equal(corr.apply(mix[0], np.zeros(4)), mix[0])  # no speech: untouched
    path = corr.save(tmp_path / "c.npz")
    again = sp.SpeechCorrection.load(path)
    assert again.audio_model == "toy 1 abc" and again.to_bytes() == path.read_bytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a speech correction file"):
        sp.SpeechCorrection.load(tmp_path / "bad.npz")
