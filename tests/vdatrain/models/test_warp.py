"""Warping with a known flow: nearest and bilinear, validity, and the pipeline's resize/flip conventions."""

import numpy as np
import torch

from vdatrain.data.geometry import CropBox
from vdatrain.models.warp import warp


def test_a_constant_shift_gathers_from_the_displaced_pixel():
    x = torch.arange(20.0).view(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 1.0  # content of t is one pixel to the right in t+k
    out, ok = warp(x, flow, mode="nearest")
    assert torch.equal(out[0, 0, :, :4], x[0, 0, :, 1:]) and not ok[0, :, 4].any() and ok[0, :, :4].all()
    assert out[0, 0, :, 4].eq(0).all()  # invalid pixels hold 0, never a sentinel
    half = flow * 0.5
    out, ok = warp(x, half)
    torch.testing.assert_close(out[0, 0, :, :4], x[0, 0, :, :4] + 0.5)  # bilinear halfway
    assert ok[0, :, :4].all() and not ok[0, :, 4].any()


def test_labels_stay_integer_and_the_callers_mask_is_respected():
    labels = torch.tensor([[[[3, 7], [1, 2]]]])
    flow = torch.zeros(1, 2, 2, 2)
    flow[:, 1] = 1.0  # from the row below
    valid = torch.tensor([[[True, False], [True, True]]])
    out, ok = warp(labels, flow, valid, mode="nearest")
    assert out.dtype == torch.int64
    assert out.tolist() == [[[[1, 0], [0, 0]]]] and ok.tolist() == [[[True, False], [False, False]]]


def test_warping_a_resized_and_flipped_crop_matches_warping_the_frame(opencv):
    """Image motion under the pipeline's conventions: crop both frames and their flow with one box."""
    h, w = 40, 64
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frame_k = np.sin(xs / 5.0) + np.cos(ys / 7.0)  # frame t+k: a smooth texture
    flow = np.stack([np.full((h, w), 2.0, np.float32), np.full((h, w), -1.0, np.float32)], -1)  # t -> t+k
    frame_t = np.sin((xs + 2.0) / 5.0) + np.cos((ys - 1.0) / 7.0)  # so frame_t(p) = frame_k(p + F)
    for flip in (False, True):
        box = CropBox(scale=1.5, y0=6, x0=10, h=32, w=48, flip=flip)
        window = box.native_window(h, w)
        y0, y1, x0, x1 = window
        crop_k = opencv.sample(box, frame_k[y0:y1, x0:x1, None].repeat(3, 2), window)[..., 0]
        crop_t = opencv.sample(box, frame_t[y0:y1, x0:x1, None].repeat(3, 2), window)[..., 0]
        crop_flow = opencv.flow(box, flow[y0:y1, x0:x1], window)
        out, ok = warp(torch.from_numpy(crop_k)[None, None], torch.from_numpy(crop_flow.transpose(2, 0, 1).copy())[None])
        inner = ok[0].numpy()
        inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
        assert inner.sum() > 500
        np.testing.assert_allclose(out[0, 0].numpy()[inner], crop_t[inner], atol=0.03)
