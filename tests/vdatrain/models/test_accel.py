"""ACCEL: starts as the single-frame model, learns only through frame t, and slides windows per frame."""

import torch
import torch.nn as nn

from vdatrain.models import Partner, SegOutput, build_model
from vdatrain.models.accel import ACCEL
from vdatrain.models.contract import Segmenter
from vdatrain.recipe import ACCELSpec, HRDASpec


class _Echo(Segmenter):
    """A single-frame 'model' whose logits are its input: every logit is a pixel value."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x, partner=None):
        return SegOutput(logits=x, features=x, feature_input=x)


def _shift_right(x, px):
    """Frame t+k of a scene moving `px` pixels to the right: content at x in t is at x + px in t+k."""
    out = torch.zeros_like(x)
    out[..., px:] = x[..., :-px]
    return out


def test_the_fused_output_equals_the_single_frame_model_at_step_0():
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18", 5, accel=ACCELSpec()).eval()
    x, other = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    flow, valid = torch.randn(2, 2, 64, 64) * 3, torch.rand(2, 64, 64) > 0.3
    with torch.no_grad():
        fused = model(x, Partner(other, flow, valid)).logits
        single = nn.functional.interpolate(model.model(x).logits, size=(64, 64), mode="bilinear",
                                           align_corners=False)
    assert fused.shape == (2, 5, 64, 64)
    torch.testing.assert_close(fused, single, rtol=1e-5, atol=1e-5)


def test_gradients_flow_through_frame_t_only_and_reach_the_fusion():
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18", 5, HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16)), ACCELSpec())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    other = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = model(x, Partner(other, torch.zeros(2, 2, 64, 64), None))
    assert out.box is not None and out.detail.shape == (2, 5, 4, 4)  # HRDA drew the detail box
    (out.logits.square().mean() + out.detail.mean()).backward()
    assert other.grad is None  # frame t+k is predicted without gradients
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.fusion.weight.grad is not None and model.fusion.weight.grad[:, 5:].abs().sum() > 0


def test_invalid_warps_fall_back_to_frame_t_logits():
    model = ACCEL(_Echo(3), num_classes=3)
    with torch.no_grad():
        model.fusion.weight.zero_()
        model.fusion.weight[:, 3:, 0, 0] = torch.eye(3)  # output = the warped t+k half only
    t, k = torch.full((1, 3, 4, 4), 1.0), torch.full((1, 3, 4, 4), 7.0)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    with torch.no_grad():
        out = model.predict(t, partner=Partner(k, torch.zeros(1, 2, 4, 4), valid))
    assert out[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and out[0, :, 1, 1].tolist() == [7.0, 7.0, 7.0]


def test_dual_frame_sliding_inference_warps_full_frames_not_paired_windows():
    """The single-frame 'model' returns its input, so every logit is a pixel value. The scene moves
    4 px right between t and t+k; with the fusion taking only the warped t+k half, the dual-frame
    prediction must give back frame t wherever t's content is visible in t+k, also across window edges."""
    model = ACCEL(_Echo(3), num_classes=3)
    with torch.no_grad():
        model.fusion.weight.zero_()
        model.fusion.weight[:, 3:, 0, 0] = torch.eye(3)
    torch.manual_seed(0)
    t = torch.rand(1, 3, 24, 40)
    k = _shift_right(t, 4)
    flow = torch.zeros(1, 2, 24, 40)
    flow[:, 0] = 4.0  # t -> t+k: content of pixel x of t is at x + 4 in t+k
    with torch.no_grad():
        out = model.predict(t, (16, 16), (8, 8), Partner(k, flow, None))
    torch.testing.assert_close(out, t)  # the last 4 columns leave the frame and fall back to frame t


def test_without_a_pair_forward_and_predict_are_the_single_frame_models():
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18", 5, accel=ACCELSpec()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, model.model(x).logits)
        torch.testing.assert_close(model.predict(x, (32, 32), (16, 16)), model.model.predict(x, (32, 32), (16, 16)))
    assert model.pair == "bwd_1" and model.model.pair is None  # what evaluation reads to load a partner frame
