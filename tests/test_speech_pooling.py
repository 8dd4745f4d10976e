"""Music features under a voice-over: speech spans from the manifest row, speech-aware emotion pooling."""

from __future__ import annotations

import numpy as np
import pytest

from commercial98k.label import speech_pooling as sp
from commercial98k.models.emotion import BUNDLED, GemsHead

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
    from commercial98k.label.clip_features import LabelConfig, LabelModels

    weighted = LabelModels(LabelConfig(ocr=False)).emotion
    plain = LabelModels(LabelConfig(ocr=False, speech_pooling="none")).emotion
    assert isinstance(weighted, sp.SpeechAwareEmotion) and weighted.correction is not None
    assert weighted.info.tag().startswith("gems-head-speech-weighted ")
    assert plain.info.tag().startswith("gems-head ")
    with pytest.raises(ValueError, match="speech_pooling 'max'"):
        _ = LabelModels(LabelConfig(ocr=False, speech_pooling="max")).emotion


def test_emotify_under_real_speech_moves_less_with_speech_pooling(shared_media):
    """A held-out Emotify excerpt under a held-out speaker's digits at +6 dB, speech spans from
    YAMNet as split finds them: the new pooling is closer to the music alone than today's."""
    from commercial98k.label.clip_features import LabelConfig, LabelModels
    from commercial98k.split.music import get_detector, speech_spans
    from commercial98k.testing import voiceover as vo

    models = LabelModels(LabelConfig(ocr=False))
    audio, aware = models.audio, models.emotion
    bank = vo.speech_bank(shared_media / "speech")
    music = vo.load_music(shared_media / "emotify" / "audio" / "pop_34.mp3", 42.0, 12.0)
    voice = vo.digit_voice(bank, len(music), 0.75, np.random.default_rng(3), speaker="theo")
    mix = vo.mix(music, voice, 6.0)
    clean_seq, mix_seq = audio.embed(music), audio.embed(mix)
    spans = speech_spans(get_detector().frame_probs(mix))
    share = sp.frame_speech_share(spans, len(mix_seq), audio.hop_s, audio.patch_s)
    assert share.mean() > 0.3  # the voice is found
    clean_share = sp.frame_speech_share(speech_spans(get_detector().frame_probs(music)), len(clean_seq),
                                        audio.hop_s, audio.patch_s)
    before = _kl(aware.head.predict(clean_seq)["probs"], aware.head.predict(mix_seq)["probs"])
    after = _kl(aware.predict(clean_seq, clean_share)["probs"], aware.predict(mix_seq, share)["probs"])
    assert after < before
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in
           ((clean_seq.mean(0), mix_seq.mean(0)),
            (sp.pooled_embedding(clean_seq, clean_share, aware.correction),
             sp.pooled_embedding(mix_seq, share, aware.correction)))]
    assert cos[1] > cos[0]
