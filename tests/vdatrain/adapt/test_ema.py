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


def test_stacked_batches_are_normalised_each_on_its_own():
    """Frame t and its partner t+k in one forward give what two forwards gave: each batch its own statistics."""
    from vdatrain.models import build_model

    torch.manual_seed(0)
    teacher = EMATeacher(build_model("deeplabv2_check", 5, hrda=None))
    a, b = torch.randn(2, 3, 48, 64), torch.randn(2, 3, 48, 64) * 3 + 1
    separate = torch.cat([teacher.predict(a), teacher.predict(b)])
    stacked = teacher.predict(torch.cat([a, b]), group=2)
    torch.testing.assert_close(stacked, separate, atol=1e-5, rtol=1e-5)
    assert (teacher.predict(torch.cat([a, b])) - separate).abs().max() > 1e-3  # one group: other statistics
    assert not any(hasattr(m, "batch_group") for m in teacher.model.modules())  # nothing left patched
