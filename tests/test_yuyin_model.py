"""YuYin model and loss behaviour on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
from yuyin_fixtures import FAKE_INDEX, fake_batch

from yuyin.losses import (
    LossWeights,
    multi_positive_nce,
    same_key_mask,
    symmetric_nce,
    triplet_loss,
    yuyin_loss,
)
from yuyin.model import SequenceEncoder, WeightedFusion, YuYin, YuYinConfig


def _model(**over) -> YuYin:
    torch.manual_seed(0)
    return YuYin(YuYinConfig.from_index(FAKE_INDEX, hidden=16, embed_dim=8, heads=2, **over)).eval()


@pytest.mark.parametrize("encoder", ["transformer", "gru", "mean"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_forward_shapes_and_normalised_outputs(encoder, pooling):
    model = _model(video_encoder=encoder, music_encoder=encoder, pooling=pooling)
    batch = fake_batch()
    out = model(batch)
    assert out["video"].shape == out["music"].shape == out["tags"].shape == (6, 8)
    assert torch.allclose(out["video"].norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(out["music"].norm(dim=1), torch.ones(6), atol=1e-5)
    assert out["category_logits"].shape == (6, 3)
    assert out["tags_valid"].tolist() == batch["tags_mask"].any(1).tolist()
    assert not out["tags_valid"][0]


@pytest.mark.parametrize("encoder", ["transformer", "gru", "mean"])
def test_padding_does_not_change_the_embedding(encoder):
    """Values at masked steps must not leak into the representation."""
    cfg = YuYinConfig.from_index(FAKE_INDEX, hidden=16, heads=2, video_encoder=encoder, dropout=0.0)
    torch.manual_seed(0)
    enc = SequenceEncoder(12, cfg, encoder).eval()
    x = torch.randn(2, 9, 12)
    mask = torch.tensor([[True] * 4 + [False] * 5, [True] * 9])
    garbage = x.clone()
    garbage[0, 4:] = 1000.0
    a, b = enc(x, mask), enc(garbage, mask)
    assert torch.allclose(a, b, atol=1e-5)
    # and the valid steps do matter
    changed = x.clone()
    changed[0, 1] = torch.randn(12)
    assert not torch.allclose(a[0], enc(changed, mask)[0], atol=1e-4)


def test_wfm_weights_are_per_sample_and_sum_to_one():
    torch.manual_seed(0)
    wfm = WeightedFusion(16)
    audio, emotion = torch.randn(5, 16), torch.randn(5, 16) * 3
    fused, w = wfm(audio, emotion)
    assert w.shape == (5, 2)
    assert torch.allclose(w.sum(1), torch.ones(5), atol=1e-6)
    assert (w > 0).all() and w[:, 0].std() > 1e-4  # different samples get different weights
    assert torch.allclose(fused, w[:, :1] * audio + w[:, 1:] * emotion, atol=1e-6)
    model = _model()
    out = model(fake_batch())
    assert out["wfm_weights"].shape == (6, 2)
    assert torch.allclose(out["wfm_weights"].sum(1), torch.ones(6), atol=1e-6)


def test_ablation_switches_remove_parts():
    batch = fake_batch()
    no_emo = _model(use_emotion=False)
    assert not hasattr(no_emo, "emotion_encoder") and no_emo(batch)["wfm_weights"] is None
    out = _model(use_wfm=False, fusion="concat")(batch)
    assert out["wfm_weights"] is None and out["music"].shape == (6, 8)
    assert _model(use_tags=False)(batch)["tags"] is None
    assert _model(use_category=False)(batch)["category_logits"] is None
    both = _model(category_from="both")(batch)
    assert both["music_category_logits"].shape == (6, 3)
    with pytest.raises(ValueError, match="video_encoder"):
        YuYinConfig(video_encoder="lstm")
    with pytest.raises(ValueError, match="unknown model option"):
        YuYinConfig.from_dict({"hiddden": 3})


def test_batch_without_any_tags():
    batch = fake_batch()
    batch["tags"] = torch.zeros(6, 0, 8)
    batch["tags_mask"] = torch.zeros(6, 0, dtype=torch.bool)
    batch["tag_ids"] = torch.zeros(6, 0, dtype=torch.int64)
    model = _model()
    out = model(batch)
    assert not out["tags_valid"].any()
    loss, parts = yuyin_loss(out, batch, LossWeights())
    assert torch.isfinite(loss) and parts["video_tag"] == 0.0


def test_same_music_pairs_are_positives_not_negatives():
    """Clips 0 and 1 share a track: the loss must not push video 0 away from music 1."""
    ids = ["a", "a", "b", "c"]
    pos = same_key_mask(ids)
    assert pos.tolist()[0] == [True, True, False, False]
    # logits where each video matches both clips of its track equally, negatives far below
    logits = torch.full((4, 4), -10.0)
    logits[pos] = 5.0
    logits.requires_grad_(True)
    multi_positive_nce(logits, pos).backward()
    g = logits.grad
    assert abs(float(g[0, 1])) < 1e-6 and abs(float(g[0, 0])) < 1e-6  # optimum: no push, no pull
    # the naive (diagonal-only) InfoNCE would push the same-track pair apart
    naive = logits.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(naive, torch.arange(4)).backward()
    assert float(naive.grad[0, 1]) > 0.05
    # value: multi-positive loss at this optimum is log(2) for rows 0-1 and ~0 for the others
    expected = (2 * math.log(2) + 0 + 0) / 4
    assert float(multi_positive_nce(logits.detach(), pos)) == pytest.approx(expected, abs=1e-4)


def test_same_music_positive_is_pulled_when_far():
    ids = ["a", "a", "b"]
    pos = same_key_mask(ids)
    logits = torch.tensor([[5.0, -5.0, 0.0], [-5.0, 5.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    multi_positive_nce(logits, pos).backward()
    assert float(logits.grad[0, 1]) < 0  # gradient descent raises the same-track score


def test_symmetric_nce_prefers_aligned_embeddings_and_handles_invalid_columns():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    pos = torch.eye(5, dtype=torch.bool)
    aligned = symmetric_nce(a, a, 10.0, pos)
    shuffled = symmetric_nce(a, a.roll(1, 0), 10.0, pos)
    assert aligned < shuffled
    valid = torch.tensor([True, True, False, True, True])
    loss = symmetric_nce(a, a.roll(1, 0), 10.0, pos, None, valid)
    assert torch.isfinite(loss)
    # an invalid column's content does not matter
    b = a.roll(1, 0).clone()
    b[2] = torch.nn.functional.normalize(torch.randn(8), dim=0)
    assert float(symmetric_nce(a, b, 10.0, pos, None, valid)) == pytest.approx(float(loss), abs=1e-5)


def test_triplet_loss_zero_when_margin_met_and_ignores_same_track():
    e = torch.eye(4)
    pos = same_key_mask(["a", "b", "c", "d"])
    assert float(triplet_loss(e, e, pos, margin=0.5)) == 0.0
    near = e.clone()
    near[1] = torch.nn.functional.normalize(e[0] + 0.1 * e[1], dim=0)
    assert float(triplet_loss(near, near, pos, margin=0.5)) > 0
    assert float(triplet_loss(near, near, same_key_mask(["a", "a", "c", "d"]), margin=0.5)) == 0.0


def test_yuyin_loss_weights_switch_tasks():
    model = _model()
    batch = fake_batch(music_ids=["m0", "m0", "m1", "m2", "m3", "m3"])
    out = model(batch)
    total, parts = yuyin_loss(out, batch, LossWeights(1.0, 0.5, 0.5, 0.2))
    assert set(parts) == {"video_music", "video_tag", "music_tag", "category"}
    expected = parts["video_music"] + 0.5 * parts["video_tag"] + 0.5 * parts["music_tag"] + 0.2 * parts["category"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    only_vm, parts2 = yuyin_loss(out, batch, LossWeights(1.0, 0.0, 0.0, 0.0))
    assert set(parts2) == {"video_music"} and float(only_vm.detach()) == pytest.approx(parts["video_music"], rel=1e-6)
    total.backward()
    assert model.logit_scale.grad is not None
