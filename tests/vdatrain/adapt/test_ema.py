"""The EMA teacher: theta_T <- a theta_T + (1 - a) theta_S, a_t = min(1 - 1/(t+1), alpha)."""

import pytest
import torch
import torch.nn as nn

from vdatrain.adapt.ema import EMATeacher, ema_alpha


def test_alpha_follows_the_student_early_and_saturates():
    assert ema_alpha(1, 0.999) == 0.5
    assert ema_alpha(9, 0.999) == pytest.approx(0.9)
    assert ema_alpha(100_000, 0.999) == 0.999


def test_update_is_the_moving_average_of_parameters_only():
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    teacher = EMATeacher(student, alpha=0.999)
    with torch.no_grad():
        for p in student.parameters():
            p.fill_(1.0)
        student[1].running_mean.fill_(5.0)
    before = [p.clone() for p in teacher.model.parameters()]
    teacher.update(student, 3)  # a = 0.75
    for t, b in zip(teacher.model.parameters(), before):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * torch.ones_like(b))
    assert torch.equal(teacher.model[1].running_mean, torch.zeros(2))  # buffers are not averaged
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_the_teacher_predicts_without_dropout_but_with_batch_statistics():
    class Net(nn.Sequential):  # the model contract's whole-input prediction
        def predict(self, x, window=None, stride=None, partner=None):
            return self(x)

    student = Net(nn.BatchNorm1d(3, affine=False), nn.Dropout(0.9))
    teacher = EMATeacher(student)
    x = torch.randn(8, 3) * 4 + 2
    out = teacher.predict(x)
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out, expected)  # train-mode BN, dropout off: deterministic


class BNNet(nn.Module):
    """A backbone that only normalises (BatchNorm without affine), an identity head, and an attention head of
    zeros (sigmoid 0.5): HRDA around it predicts exactly the normalised pixels, so statistics can be written out."""

    def __init__(self):
        super().__init__()
        self.backbone, self.head = nn.BatchNorm2d(3, affine=False), nn.Identity()
        self.output_stride, self.num_classes = 1, 3

    def attention_head(self, num_classes):
        conv = nn.Conv2d(3, num_classes, 1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv


def _by_hand(x, windows, statistics):
    """HRDA's detail branch on BNNet: every 4 x 4 window of every image normalised with the statistics of all
    windows of all images ("joint") or of that window's images ("per_window"), averaged where they overlap."""
    crops = [x[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in windows]
    if statistics == "joint":
        stack = torch.cat(crops)
        mean, var = stack.mean((0, 2, 3), keepdim=True), stack.var((0, 2, 3), unbiased=False, keepdim=True)
        normed = [(c - mean) / torch.sqrt(var + 1e-5) for c in crops]
    else:
        normed = [(c - c.mean((0, 2, 3), keepdim=True)) / torch.sqrt(c.var((0, 2, 3), unbiased=False, keepdim=True)
                                                                     + 1e-5) for c in crops]
    out, count = torch.zeros_like(x), torch.zeros_like(x[:1, :1])
    for (y0, y1, x0, x1), n in zip(windows, normed):
        out[:, :, y0:y1, x0:x1] += n
        count[:, :, y0:y1, x0:x1] += 1
    return out / count


@pytest.mark.parametrize("statistics", ["joint", "per_window"])
def test_the_teachers_detail_windows_share_batchnorm_statistics_as_the_references_one_forward(statistics):
    """The reference's teacher predicts all sliding detail windows in ONE forward (HRDA's batched slide) with
    BatchNorm in training mode: the statistics of all windows of all images together ("joint", the default).
    "per_window" normalises each window's images on their own. Both written out by hand here."""
    import torch.nn.functional as F

    from vdatrain.models.hrda import HRDA
    from vdatrain.models.sliding import window_grid

    torch.manual_seed(0)
    model = HRDA(BNNet(), 3, context_scale=0.5, detail_crop=(4, 4), detail_stride=(2, 2))
    teacher = EMATeacher(model, statistics=statistics)
    x = torch.randn(2, 3, 8, 8) * torch.linspace(0.5, 3, 8)  # columns of different spread: windows differ
    got = teacher.predict(x)
    small = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    context = (small - small.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        small.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    detail = _by_hand(x, window_grid(8, 8, (4, 4), (2, 2)), statistics)
    up = F.interpolate(0.5 * context, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, 0.5 * detail + up, atol=1e-5, rtol=1e-5)
    other = _by_hand(x, window_grid(8, 8, (4, 4), (2, 2)), "per_window" if statistics == "joint" else "joint")
    assert (0.5 * other + up - got).abs().max() > 1e-2  # the two rules give other pseudo-labels
    assert not any(hasattr(m, "batch_group") for m in teacher.model.modules())  # nothing left patched


def test_a_two_frame_teacher_normalises_frame_t_and_its_partner_together():
    """ACCEL's teacher: frames t and t+k in one forward (the reference stacked them in the batch)."""
    from vdatrain.models.accel import ACCEL
    from vdatrain.models.contract import Partner

    class Plain(BNNet):
        pair = None

        def predict(self, x, window=None, stride=None, partner=None, batch=1):
            return self.backbone(x)

    torch.manual_seed(0)
    model = ACCEL(Plain(), 3, "bwd_1")
    with torch.no_grad():
        model.fusion.weight.zero_()
        model.fusion.weight[:, 3:, 0, 0] = torch.eye(3)  # the fused output is frame t+k's logits, warped
    teacher = EMATeacher(model)
    t, k = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6) * 3 + 1
    out = teacher.predict(t, Partner(k, torch.zeros(2, 2, 6, 6), torch.ones(2, 6, 6, dtype=torch.bool)))
    both = torch.cat([t, k])
    joint = (k - both.mean((0, 2, 3), keepdim=True)) / torch.sqrt(both.var((0, 2, 3), unbiased=False, keepdim=True)
                                                                    + 1e-5)
    torch.testing.assert_close(out, joint, atol=1e-5, rtol=1e-5)
