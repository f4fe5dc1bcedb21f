"""Every entry of every registry meets its registry's contract: an entry registered later (ours or a user's, through
a recipe's `imports:`) is tested here without new test code."""

import math

import pytest
import torch

from vdatrain.adapt.mix import MIXES
from vdatrain.adapt.refine import REFINEMENTS, Candidates
from vdatrain.models import MODELS, build_model
from vdatrain.models.weights import WEIGHT_FORMATS, detect_format, load_backbone
from vdatrain.recipe.schema import BackboneSpec

# models built around a backbone a recipe names: a small one of the family
TINY_VIT = BackboneSpec(timm="vit_small_patch16_dinov3", embed_dim=32, depth=2, num_heads=2)
BACKBONES = {"daformer_timm": TINY_VIT, "daformer_timm_check": TINY_VIT}


def _build(name, **kw):
    return build_model(name, backbone=BACKBONES.get(name), **kw)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_backbone_returns_the_levels_it_declares_at_two_input_sizes(name):
    backbone = _build(name, num_classes=5).backbone
    assert backbone.levels and all(lv.channels > 0 and lv.reduction > 0 for lv in backbone.levels)
    for h, w in ((64, 96), (96, 64)):
        h, w = (math.ceil(v / backbone.size_divisibility) * backbone.size_divisibility for v in (h, w))
        feats = backbone(torch.randn(1, 3, h, w))
        assert isinstance(feats, list), name
        assert [tuple(f.shape[1:]) for f in feats] == [
            (lv.channels, math.ceil(h / lv.reduction), math.ceil(w / lv.reduction)) for lv in backbone.levels], name
    params = {n for n, _ in backbone.named_parameters()}
    assert backbone.no_weight_decay() <= params
    assert all(0 <= backbone.layer_id(n) <= backbone.num_layers for n in params)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_model_returns_logits_at_its_stride_features_and_full_size_predictions(name):
    torch.manual_seed(0)
    model = _build(name, num_classes=5)
    x = torch.randn(1, 3, 64, 96)
    model.train()
    out = model(x)
    s = model.output_stride
    assert out.logits.shape == (1, 5, math.ceil(64 / s), math.ceil(96 / s)), name
    assert out.features.dim() == 4 and out.features.shape[0] == 1 and out.feature_input.shape[1] == 3
    assert out.detail is None and out.box is None  # a plain model; HRDA adds them
    assert callable(model.attention_head)  # what HRDA wraps a model with
    model.eval()
    with torch.no_grad():
        whole = model.predict(x)
        slid = model.predict(x, window=(64, 64), stride=(32, 32))
        batched = model.predict(x, window=(64, 64), stride=(32, 32), batch=2)
    assert whole.shape == out.logits.shape  # the whole input at the model's stride
    assert slid.shape == (1, 5, 64, 96) and torch.isfinite(slid).all()  # windows: upsampled to the input
    torch.testing.assert_close(batched, slid, atol=1e-5, rtol=1e-5)  # in evaluation, batching windows is exact


@pytest.mark.parametrize("name", list(MODELS))
def test_a_models_own_backbone_weights_load_back_through_the_weight_formats(name, tmp_path):
    """What a user saves of a backbone is a weights file the registered formats recognise and load strictly."""
    torch.manual_seed(0)
    saved, fresh = _build(name, num_classes=5), _build(name, num_classes=5)
    torch.save(saved.backbone.state_dict(), tmp_path / "backbone.pth")
    assert load_backbone(fresh.backbone, tmp_path / "backbone.pth") in WEIGHT_FORMATS
    for key, value in saved.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[key], value), key


@pytest.mark.parametrize("name", list(WEIGHT_FORMATS))
def test_a_weight_format_detects_nothing_in_an_empty_state_dict_and_converts_it_to_one(name):
    fmt = WEIGHT_FORMATS[name]
    assert fmt.detect({}) is False and fmt.convert({}) == {}
    assert detect_format({}) == "unknown"


def _candidates(truth: bool) -> Candidates:
    g = torch.Generator().manual_seed(0)
    shape = (2, 8, 8)
    return Candidates(label_t=torch.randint(0, 3, shape, generator=g), conf_t=torch.rand(shape, generator=g),
                      label_k=torch.randint(0, 3, shape, generator=g), conf_k=torch.rand(shape, generator=g),
                      usable=torch.rand(shape, generator=g) > 0.3, invalid="frame_t",
                      truth=torch.randint(0, 3, shape, generator=g) if truth else None)


@pytest.mark.parametrize("name", list(REFINEMENTS))
def test_a_refinement_strategy_returns_boolean_maps_and_takes_frame_t_plus_k_only_where_the_warp_is_usable(name):
    strategy = REFINEMENTS[name]
    c = _candidates(truth=getattr(strategy, "needs_truth", False))
    keep, from_k = strategy(c)
    assert keep.shape == from_k.shape == c.usable.shape and keep.dtype == from_k.dtype == torch.bool
    assert not (from_k & ~c.usable).any()  # an unusable warp is never the label's source
    again = strategy(c)
    assert torch.equal(again[0], keep) and torch.equal(again[1], from_k)  # a function of its candidates


@pytest.mark.parametrize("name", list(MIXES))
def test_a_mix_strategy_pastes_whole_classes_of_the_source_label(name):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, 16, 16), generator=g)
    labels[:, :2] = 255
    masks = MIXES[name](labels, None, g)
    if masks is None:  # no mixing
        return
    assert masks.shape == labels.shape and set(masks.unique().tolist()) <= {0.0, 1.0}
    for b in range(2):
        for c in labels[b].unique():
            assert masks[b][labels[b] == c].unique().numel() == 1, (name, int(c))  # a class is pasted whole or not
