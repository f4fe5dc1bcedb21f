"""HRDA: detail boxes on the grid, fusion with masked attention and (1 - a) before upsampling, shapes."""

import torch
import torch.nn.functional as F

from vdatrain.models.sliding import slide_logits
from vdatrain.models import build_model
from vdatrain.models.hrda import HRDA, random_detail_box
from vdatrain.recipe import HRDASpec


def _up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_detail_boxes_have_the_crop_size_and_corners_on_the_grid():
    g = torch.Generator().manual_seed(0)
    boxes = [random_detail_box(1024, 1024, (512, 512), 8, g) for _ in range(300)]
    assert all(y1 - y0 == 512 and x1 - x0 == 512 and y0 % 8 == 0 and x0 % 8 == 0 for y0, y1, x0, x1 in boxes)
    assert all(0 <= y0 and y1 <= 1024 and 0 <= x0 and x1 <= 1024 for y0, y1, x0, x1 in boxes)
    assert max(b[0] for b in boxes) == 512 or max(b[0] for b in boxes) > 480  # the whole range is reachable
    assert random_detail_box(720, 720, (360, 360), 8, g)[1] <= 720


def test_training_fusion_masks_attention_outside_the_box_and_weights_context_before_upsampling():
    model = HRDA(build_model("deeplabv2_r18", 3), 3, detail_crop=(32, 32))
    torch.manual_seed(0)
    s_ctx = torch.randn(1, 3, 4, 8)  # context logits of a 64x128 input at stride 16 (stride 8 on the half image)
    att = torch.rand(1, 3, 4, 8)
    s_det = torch.randn(1, 3, 4, 4)  # detail logits of the 32x32 box at stride 8
    box = (32, 64, 64, 96)
    fused = model.fuse_train(s_ctx, att, s_det, box, (64, 128))
    mask = torch.zeros(1, 3, 4, 8)
    mask[:, :, 2:4, 4:6] = 1  # the box in attention cells (16 px each)
    masked = att * mask
    canvas = torch.zeros(1, 3, 8, 16)
    canvas[:, :, 4:8, 8:12] = s_det
    expected = _up(masked, (8, 16)) * canvas + _up((1 - masked) * s_ctx, (8, 16))
    torch.testing.assert_close(fused, expected)
    wrong = _up(masked, (8, 16)) * canvas + (1 - _up(masked, (8, 16))) * _up(s_ctx, (8, 16))
    assert not torch.allclose(fused, wrong)  # upsampling after the product is a different model


def test_output_shapes_in_training_and_inference():
    model = build_model("deeplabv2_r18", 19, HRDASpec(detail_crop=(64, 64), detail_stride=(32, 32)))
    x = torch.randn(2, 3, 128, 128)
    out = model(x, box=(0, 64, 64, 128))
    assert out.logits.shape == (2, 19, 16, 16) and out.detail.shape == (2, 19, 8, 8) and out.box == (0, 64, 64, 128)
    assert out.features.shape[-2:] == (8, 8) and out.feature_input.shape == (2, 3, 64, 64)  # the context branch
    torch.manual_seed(3)
    drawn = model(x).box  # without a box, one is drawn on the grid with torch's generator
    torch.manual_seed(3)
    assert drawn == random_detail_box(128, 128, (64, 64), 8)
    model.eval()
    with torch.no_grad():
        assert model.predict(x).shape == (2, 19, 128, 128)
        # BDD-like detail windows off the feature grid (72 / 36 px at stride 8) still stitch
        model.detail_crop, model.detail_stride = (72, 72), (36, 36)
        assert model.predict(torch.randn(1, 3, 144, 144)).shape == (1, 19, 144, 144)


def test_inference_fuses_the_stitched_detail_with_the_full_attention():
    model = build_model("daformer_mitb0", 5, HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        s_ctx, att, _, _ = model.context(x)
        detail = slide_logits(model.detail, x, 5, (32, 32), (16, 16))
        expected = _up(att, (64, 64)) * detail + _up((1 - att) * s_ctx, (64, 64))
        torch.testing.assert_close(model.predict(x), expected)
