"""Resize-then-crop from a native window equals resizing the frame (the device crops of frames, the CPU crops of
labels, one geometry); flows scale and flip correctly."""

import cv2
import numpy as np
import pytest

import torch

from vdatrain.data.crops import crop_part, label_crop
from vdatrain.data.geometry import CropBox, class_ratio_ok, margin_bounds, random_box


def _frame(h=120, w=200, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)


def _resize_then_crop(img, box, interp=cv2.INTER_LINEAR):
    """The slow reference: resize the whole frame with pixel centres aligned, crop, flip."""
    h, w = img.shape[:2]
    rh, rw = round(h * box.scale), round(w * box.scale)
    m = np.array([[1 / box.scale, 0, 0.5 / box.scale - 0.5], [0, 1 / box.scale, 0.5 / box.scale - 0.5]])
    full = cv2.warpAffine(img, m, (rw, rh), flags=interp | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    out = full[box.y0:box.y0 + box.h, box.x0:box.x0 + box.w]
    return out[:, ::-1] if box.flip else out


@pytest.mark.parametrize("scale", [4 / 3, 2.0, 1.0, 0.5])
@pytest.mark.parametrize("flip", [False, True])
def test_window_read_equals_resizing_the_whole_frame(scale, flip):
    img = _frame()
    rng = np.random.default_rng(1)
    for _ in range(5):
        box = random_box(rng, img.shape[:2], scale, (64, 96), flip_p=float(flip))
        y0, y1, x0, x1 = window = box.native_window(*img.shape[:2])
        assert (y1 - y0) * (x1 - x0) < img.shape[0] * img.shape[1] or scale <= 0.5  # reads only what it needs
        part = {"image": torch.from_numpy(img[y0:y1, x0:x1].copy())[None, None], "box": [box], "window": [window]}
        got = crop_part(part, torch.device("cpu"))["image"][0, 0]  # normalised (3, h, w)
        from vdatrain.data.normalise import IMAGENET_MEAN, IMAGENET_STD
        grey = got.permute(1, 2, 0).numpy() * IMAGENET_STD + IMAGENET_MEAN
        np.testing.assert_allclose(grey, _resize_then_crop(img, box).astype(np.float32), atol=1 + 1e-3)
        assert grey.shape == (box.h, box.w, 3)


def _opencv_resize_then_crop(label, box):
    """What the reference did to labels: cv2.resize(INTER_NEAREST) of the whole frame, crop, flip."""
    h, w = label.shape
    full = cv2.resize(label, (round(w * box.scale), round(h * box.scale)), interpolation=cv2.INTER_NEAREST)
    out = full[box.y0:box.y0 + box.h, box.x0:box.x0 + box.w]
    return out[:, ::-1] if box.flip else out


@pytest.mark.parametrize("scale", [4 / 3, 2.0, 1.0, 0.75])
def test_labels_use_nearest_and_keep_their_values(scale):
    """"floor" (the default) is OpenCV's resize, as the reference resized labels; "centre" the pixel-centre
    nearest neighbour of the device crops."""
    label = np.random.default_rng(2).choice(np.array([0, 13, 255], np.uint8), (60, 100))
    rng = np.random.default_rng(3)
    for flip in (False, True):
        box = random_box(rng, label.shape, scale, (40, 56), flip_p=float(flip))
        window = box.native_window(60, 100)
        y0, y1, x0, x1 = window
        got = label_crop(label[y0:y1, x0:x1], box, window, "floor", label.shape)
        assert set(np.unique(got)) <= {0, 13, 255} and got.dtype == np.uint8
        np.testing.assert_array_equal(got, _opencv_resize_then_crop(label, box))
        centre = label_crop(label[y0:y1, x0:x1], box, window, "centre", label.shape)
        np.testing.assert_array_equal(centre, _resize_then_crop(label, box, cv2.INTER_NEAREST))


def test_labels_resized_by_four_thirds_take_floor_x_over_scale():
    """VIPER's labels at the paper's 4/3: output pixel x takes native pixel floor(3 x / 4), written out by hand
    for a 3 x 6 label: columns 0 0 1 2 3 3 4 5 (0, 0.75, 1.5, 2.25, 3, 3.75, 4.5, 5.25 floored), rows 0 0 1 2."""
    label = (np.arange(3)[:, None] * 10 + np.arange(6)[None, :]).astype(np.uint8)  # value = 10 row + column
    box = CropBox(4 / 3, 0, 0, 4, 8)
    window = box.native_window(3, 6)
    y0, y1, x0, x1 = window
    got = label_crop(label[y0:y1, x0:x1], box, window, "floor", (3, 6))
    cols, rows = [0, 0, 1, 2, 3, 3, 4, 5], [0, 0, 1, 2]
    assert got.tolist() == [[10 * r + c for c in cols] for r in rows]
    centre = label_crop(label[y0:y1, x0:x1], box, window, "centre", (3, 6))
    assert centre[0].tolist() != [10 * 0 + c for c in cols]  # pixel centres: another rule (0 1 1 2 3 4 4 5)


def _warp(img, flow):
    h, w = flow.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, u + flow[..., 0], v + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("scale,flip", [(1.0, False), (2.0, False), (4 / 3, True), (0.75, True)])
def test_transformed_flow_still_warps_the_transformed_frames(scale, flip, opencv):
    """Frame b = frame a shifted by (3, -2) px: the flow a -> b is (3, -2). After any crop, resize and
    flip of both frames and the flow, warping b with the flow must still give a."""
    big = _frame(160, 240, seed=3).astype(np.float32)
    a, b = big[10:130, 10:210], big[8:128, 13:213]  # b(p) = a(p + (3, -2))... so a(p) = b(p - (3, -2))
    flow = np.zeros((120, 200, 2), np.float32)
    flow[..., 0], flow[..., 1] = -3.0, 2.0  # pixel p of a is found at p + flow(p) in b
    np.testing.assert_allclose(_warp(b, flow)[5:-5, 5:-5], a[5:-5, 5:-5], atol=1e-3)
    box = CropBox(scale, 6, 8, 64, 96, flip)
    window = box.native_window(120, 200)
    y0, y1, x0, x1 = window
    ta, tb = opencv.sample(box, a[y0:y1, x0:x1], window), opencv.sample(box, b[y0:y1, x0:x1], window)
    tf = opencv.flow(box, flow[y0:y1, x0:x1], window)
    np.testing.assert_allclose(tf[..., 0], -3.0 * scale * (-1 if flip else 1), atol=1e-5)
    np.testing.assert_allclose(tf[..., 1], 2.0 * scale, atol=1e-5)
    err = np.abs(_warp(tb, tf) - ta)[8:-8, 8:-8].mean()
    assert err < 1.5  # bilinear resampling twice (no antialiasing when downscaling); wrong geometry is far worse
    wrong = tf.copy()
    wrong[..., 0] *= -1
    assert np.abs(_warp(tb, wrong) - ta)[8:-8, 8:-8].mean() > 5 * err


def test_class_ratio_rule():
    label = np.zeros((10, 10), np.uint8)
    assert not class_ratio_ok(label)
    label[:3] = 1  # 70% / 30%
    assert class_ratio_ok(label)
    label[:2] = 255  # 8 ignored rows do not count: 80% of the labelled pixels are class 0
    label[2] = 1
    assert not class_ratio_ok(label)


def test_margins_scale_the_reference_margins():
    assert margin_bounds((128, 256)) == (4, 128 - 30, 4, 256 - 4)
    assert margin_bounds((1024, 2048)) == (30, 1024 - 240, 30, 2048 - 30)


def test_label_crops_are_what_opencv_nearest_resampling_gives(opencv):
    """Whole-pixel crops are slices, flips reverse the columns: the values stay those of one OpenCV nearest
    resampling of the window (the oracle), at the paper's scales and others."""
    rng = np.random.default_rng(0)
    h, w = 120, 200
    label = rng.integers(0, 19, (h, w), dtype=np.uint8)
    for t in range(120):
        box = random_box(rng, (h, w), [1.0, 4 / 3, 2.0, 0.75][t % 4], (48, 64), 0.5)
        window = box.native_window(h, w)
        y0, y1, x0, x1 = window
        got = label_crop(label[y0:y1, x0:x1], box, window, "centre", (h, w))
        want = opencv.sample(box, label[y0:y1, x0:x1], window, nearest=True)
        assert got.dtype == want.dtype and np.array_equal(got, want)
