"""AdamW groups and the warm-up then linear-decay schedule, against hand-computed values."""

import pytest
import torch

from vdatrain.models import build_model
from vdatrain.optim import build_optimizer, lr_at, param_groups, set_lr


def test_head_gets_ten_times_the_rate_and_norms_no_weight_decay():
    model = build_model("daformer_mitb0")
    groups = {g["name"]: g for g in param_groups(model, 6e-5, 0.01, 10.0)}
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
    opt = build_optimizer(build_model("deeplabv2_r18"), 6e-5, 0.01, 10.0, (0.9, 0.999))
    assert [g["name"] for g in opt.param_groups] == ["backbone", "backbone-norm", "head"]  # the DLV2 head has no norm
    set_lr(opt, 1500, 40000, 1500, 1e-6)  # end of warm-up: every group on its own decay line
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([6e-5 * 0.9625, 6e-5 * 0.9625, 6e-4 * 0.9625])
    set_lr(opt, 0, 40000, 1500, 1e-6)  # the warm-up starts each group at 1e-6 of its rate
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([6e-11, 6e-11, 6e-10], rel=1e-6)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)
