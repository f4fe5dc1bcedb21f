"""Feature distance: thing-class cells by 0.75 majority; mean L2 distance; zero on an empty mask."""

import torch
import torch.nn as nn

from vdatrain.models.backbone import Backbone, Level
from vdatrain.adapt.feature_distance import FeatureDistance, downscale_label, thing_mask
from vdatrain.recipe import FDSpec


def test_majority_downscaling_of_a_known_label():
    label = torch.full((1, 4, 4), 0)
    label[0, :2, :2] = 13  # a car cell
    label[0, 0, 2:] = 11  # a person covering 2/4 of its cell: no majority
    label[0, 2:, 2:] = 255
    label[0, 3, 3] = 6  # 1 of 4 pixels
    small = downscale_label(label, (2, 2), 0.75, 19)
    assert small.tolist() == [[[13, 255], [0, 255]]]
    assert thing_mask(label, (2, 2), [6, 7, 11, 13], 0.75, 19).tolist() == [[[True, False], [False, False]]]


class Conv(Backbone):
    levels = (Level(4, 2),)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 2, 2, bias=False)

    def forward(self, x):
        return [self.conv(x)]


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Conv()


def test_loss_is_the_weighted_mean_distance_over_thing_cells_and_zero_without_them():
    model = Model()
    fd = FeatureDistance(model, FDSpec(weight=0.5, classes=[13]))
    image = torch.randn(1, 3, 4, 4)
    imnet = model.backbone(image)[-1].detach()
    student = imnet.clone()
    student[0, :, 0, 0] += torch.tensor([3.0, 4.0, 0.0, 0.0])  # distance 5 in the car cell
    student[0, :, 1, 1] += 100.0  # far off, but not a thing cell
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, :2, :2] = 13
    torch.testing.assert_close(fd.loss(student, image, label), torch.tensor(0.5 * 5.0))
    student.requires_grad_(True)
    empty = fd.loss(student, image, torch.zeros(1, 4, 4, dtype=torch.long))
    assert empty.item() == 0.0 and not torch.isnan(empty)
    empty.backward()  # the guard keeps a graph


def test_under_bf16_the_frozen_backbone_runs_in_bf16_within_a_stated_tolerance_of_fp32():
    """A bf16 recipe's feature distance: the frozen ImageNet backbone under the run's autocast (as the student),
    the distance in float32. On a real backbone's features the loss stays within 2% of fp32's."""
    from functools import partial

    from vdatrain.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv2_check", 19)
    fd = FeatureDistance(model, FDSpec(classes=[13]))
    image = torch.randn(2, 3, 64, 64)
    student = model.backbone(image)[-1].detach() + 0.1 * torch.randn(2, model.backbone.channels[-1], 8, 8)
    label = torch.full((2, 64, 64), 13, dtype=torch.long)
    fp32 = fd.loss(student, image, label)
    bf16 = fd.loss(student, image, label, partial(torch.autocast, "cpu", dtype=torch.bfloat16))
    assert fp32 > 0 and bf16.dtype == torch.float32
    assert abs(bf16.item() - fp32.item()) <= 0.02 * fp32.item()
    assert bf16.item() != fp32.item()  # it did run in bf16
