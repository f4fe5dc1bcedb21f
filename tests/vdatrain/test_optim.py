"""AdamW groups and the warm-up then linear-decay schedule, against hand-computed values."""

import pytest
import torch

from vdatrain.models import build_model
from vdatrain.optim import build_optimizer, lr_at, param_groups, set_lr


def test_head_gets_ten_times_the_rate_and_norms_no_weight_decay():
    model = build_model("daformer_mitb0")
    groups = {g["name"]: g for g in param_groups(model, 6e-5, 0.01, 10.0, norm_weight_decay="zero")}
    assert set(groups) == {"backbone", "backbone-norm", "head", "head-norm"}
    assert groups["backbone"]["lr"] == 6e-5 and groups["head"]["lr"] == pytest.approx(6e-4)
    assert groups["backbone-norm"]["weight_decay"] == 0 and groups["backbone"]["weight_decay"] == 0.01
    ln = model.backbone.norm1.weight
    assert any(p is ln for p in groups["backbone-norm"]["params"])
    assert any(p is model.head.conv_seg.weight for p in groups["head"]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_schedule_by_hand():
    # mmseg poly (power 1) over 40000 iterations, times a warm-up factor from 1e-6 to 1 over 1500
    assert lr_at(0, 6e-5, 40000, 1500, 1e-6) == pytest.approx(6e-11)
    assert lr_at(750, 6e-5, 40000, 1500, 1e-6) == pytest.approx(6e-5 * (1 - 750 / 40000) * (1 - 0.5 * (1 - 1e-6)))
    assert lr_at(1500, 6e-5, 40000, 1500, 1e-6) == pytest.approx(6e-5 * 0.9625)
    assert lr_at(20000, 6e-5, 40000, 1500, 1e-6) == pytest.approx(3e-5)
    assert lr_at(40000, 6e-5, 40000, 1500, 1e-6) == 0.0


def test_set_lr_scales_every_group_from_its_own_rate():
    opt = build_optimizer(build_model("deeplabv2_r18"), 6e-5, 0.01, 10.0, (0.9, 0.999), "zero")
    assert [g["name"] for g in opt.param_groups] == ["backbone", "backbone-norm", "head"]  # the DLV2 head has no norm
    set_lr(opt, 1500, 40000, 1500, 1e-6)  # end of warm-up: every group on its own decay line
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([6e-5 * 0.9625, 6e-5 * 0.9625, 6e-4 * 0.9625])
    set_lr(opt, 0, 40000, 1500, 1e-6)  # the warm-up starts each group at 1e-6 of its rate
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([6e-11, 6e-11, 6e-10], rel=1e-6)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)


def _counts(groups):
    return {g["name"]: sum(p.numel() > 0 for p in g["params"]) for g in groups}


def test_reference_groups_deeplabv2_r101_hrda_accel():
    """mmcv's custom keys on parameter names: no name of ResNet-101 or the DLV2 heads holds "norm", so every
    BatchNorm keeps weight decay; the ACCEL fusion conv is not under "head": the backbone's rate."""
    from vdatrain.recipe import ACCELSpec, HRDASpec

    model = build_model("deeplabv2_r101", 19, HRDASpec(), ACCELSpec())
    groups = param_groups(model, 6e-5, 0.01, 10.0, "by_name")
    # 106 bias-free convs (stem 3, 33 bottlenecks x 3, 4 downsamples) and as many BatchNorms (weight, bias)
    backbone = len(list(model.backbone.parameters()))
    assert backbone == 106 + 2 * 106
    # heads: the segmentation head and the attention head, two dilated convs with bias each
    assert _counts(groups) == {"backbone": backbone + 1, "head": 8}
    assert {g["name"]: g["weight_decay"] for g in groups} == {"backbone": 0.01, "head": 0.01}
    assert {g["name"]: g["lr"] for g in groups} == {"backbone": 6e-5, "head": pytest.approx(6e-4)}
    assert any(p is model.fusion.weight for p in groups[0]["params"])
    at_head = build_model("deeplabv2_r101", 19, HRDASpec(), ACCELSpec(fusion_lr="head"))
    ours = {g["name"]: len(g["params"]) for g in param_groups(at_head, 6e-5, 0.01, 10.0, "zero")}
    assert ours == {"backbone": 106, "backbone-norm": 212, "head": 9}  # the fusion at the head's rate


def test_reference_groups_daformer_mitb5_hrda():
    """MiT-B5's LayerNorms (two per block, one per spatial-reduction attention in stages 1-3, one per patch
    embedding, one per stage: 52 x 4 + 49 x 2 + 4 x 2 + 4 x 2 = 322 tensors) lose weight decay; the DAFormer
    heads' BatchNorms (named bn) keep it."""
    from vdatrain.recipe import HRDASpec

    model = build_model("daformer_mitb5", 19, HRDASpec())
    groups = {g["name"]: g for g in param_groups(model, 6e-5, 0.01, 10.0, "by_name")}
    assert set(groups) == {"backbone", "backbone-norm", "head"}
    assert len(groups["backbone-norm"]["params"]) == 322
    assert len(groups["backbone"]["params"]) == len(list(model.backbone.parameters())) - 322
    head_bn = [p for m in (model.head, model.attention) for mod in m.modules()
               if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters()]
    assert head_bn and all(any(p is q for q in groups["head"]["params"]) for p in head_bn)
    assert groups["head"]["weight_decay"] == 0.01 and groups["backbone-norm"]["weight_decay"] == 0.0
