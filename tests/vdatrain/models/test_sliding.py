"""Sliding-window inference: mmseg's window layout, exact stitching, averaging of overlaps."""

import torch

from vdatrain.models.sliding import slide_logits, window_grid


def test_window_layout_matches_mmseg():
    # Cityscapes: 1024x2048 with 1024 windows at stride 512 -> one row of three windows
    assert window_grid(1024, 2048, (1024, 1024), (512, 512)) == [(0, 1024, 0, 1024), (0, 1024, 512, 1536), (0, 1024, 1024, 2048)]
    # BDD: 720x1280 with 720 windows at stride 360 -> 2 + ceil(560 / 360) = 3 columns, the last flush right
    assert window_grid(720, 1280, (720, 720), (360, 360)) == [(0, 720, 0, 720), (0, 720, 360, 1080), (0, 720, 560, 1280)]
    # smaller than the window: one clipped window
    assert window_grid(100, 150, (512, 512), (256, 256)) == [(0, 100, 0, 150)]


def test_stitching_is_exact_for_a_position_preserving_model():
    image = torch.randn(2, 3, 70, 130)
    identity = lambda x: x.repeat(1, 2, 1, 1)[:, :5]  # 5 "classes" copied from the input channels
    out = slide_logits(identity, image, 5, (32, 48), (16, 24))
    torch.testing.assert_close(out[:, :3], image)
    torch.testing.assert_close(out[:, 3:5], image[:, :2])


def test_overlapping_windows_are_averaged_and_low_resolution_logits_upsampled():
    calls = []

    def model(x):  # logits at stride 4, constant per window: the window's index
        calls.append(x.shape[-2:])
        return torch.full((x.shape[0], 1, x.shape[2] // 4, x.shape[3] // 4), float(len(calls) - 1))

    out = slide_logits(model, torch.zeros(1, 3, 32, 64), 1, (32, 32), (32, 16))
    assert len(calls) == 3 and all(tuple(s) == (32, 32) for s in calls)
    # windows at x 0-32, 16-48, 32-64: columns 16-32 average windows 0 and 1, 32-48 windows 1 and 2
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 0, 20] == 0.5 and out[0, 0, 0, 40] == 1.5 and out[0, 0, 0, 60] == 2


def test_batched_windows_give_the_sequential_result():
    import torch

    from vdatrain.models.sliding import slide_logits
    from vdatrain.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv2_check", 5, hrda=None).eval()
    x = torch.randn(2, 3, 72, 100)  # windows 32x48, stride 16x24: a 4 x 3 grid, clipped sizes mixed in
    with torch.no_grad():
        one = slide_logits(model.predict, x, 5, (32, 48), (16, 24), batch=1)
        for batch in (2, 5, 64):
            torch.testing.assert_close(slide_logits(model.predict, x, 5, (32, 48), (16, 24), batch=batch), one,
                                       atol=1e-5, rtol=1e-5)


def test_hrda_predicts_all_detail_windows_in_one_forward():
    """HRDA's batched slide: the nine detail windows of both images in one forward, in evaluation as for the
    teacher; in evaluation mode (running statistics) that equals predicting window by window."""
    import torch

    from vdatrain.models import build_model
    from vdatrain.models.sliding import slide_logits
    from vdatrain.recipe import HRDASpec

    torch.manual_seed(0)
    model = build_model("deeplabv2_check", 5, hrda=HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16)))
    x = torch.randn(2, 3, 64, 64)
    calls = []
    detail = model.detail
    model.detail = lambda w: (calls.append(w.shape[0]), detail(w))[1]
    with torch.no_grad():
        stacked = model.eval().predict(x)
        assert calls == [18]  # all nine windows of both images in one forward
        one_by_one = slide_logits(detail, x, 5, (32, 32), (16, 16), batch=1)
        s_context, attention, _, _ = model.context(x)
        up = lambda t: torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(stacked, up(attention) * one_by_one + up((1 - attention) * s_context),
                                   atol=1e-5, rtol=1e-5)
