"""Resize-then-crop from a native window equals resizing the frame; flows scale and flip correctly."""

import cv2
import numpy as np
import pytest

from vdatrain.data.geometry import CropBox, class_ratio_ok, margin_mask, random_box


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
        got = box.sample(img[y0:y1, x0:x1], window)
        np.testing.assert_allclose(got.astype(int), _resize_then_crop(img, box).astype(int), atol=1)
        assert got.shape == (box.h, box.w, 3)


def test_labels_use_nearest_and_keep_their_values():
    label = np.random.default_rng(2).choice(np.array([0, 13, 255], np.uint8), (60, 100))
    box = CropBox(2.0, 10, 20, 50, 70, flip=True)
    window = box.native_window(60, 100)
    y0, y1, x0, x1 = window
    got = box.sample(label[y0:y1, x0:x1], window, nearest=True)
    assert set(np.unique(got)) <= {0, 13, 255}
    np.testing.assert_array_equal(got, _resize_then_crop(label, box, cv2.INTER_NEAREST))


def _warp(img, flow):
    h, w = flow.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, u + flow[..., 0], v + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("scale,flip", [(1.0, False), (2.0, False), (4 / 3, True), (0.75, True)])
def test_transformed_flow_still_warps_the_transformed_frames(scale, flip):
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
    ta, tb = box.sample(a[y0:y1, x0:x1], window), box.sample(b[y0:y1, x0:x1], window)
    tf = box.flow(flow[y0:y1, x0:x1], window)
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


def test_margin_mask_scales_the_reference_margins():
    m = margin_mask((128, 256))
    assert m.shape == (128, 256)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    assert (rows[0], rows[-1] + 1) == (4, 128 - 30) and (cols[0], cols[-1] + 1) == (4, 256 - 4)


def test_the_fast_paths_give_exactly_what_one_affine_resampling_gives():
    """Whole-pixel crops are slices, strided store windows go to OpenCV uncopied, flips are cv2.flip: the
    values stay those of resampling a contiguous copy of the window and reversing its columns."""
    import cv2

    from vdatrain.data.geometry import random_box

    def reference(box, data, window, nearest):
        src = np.ascontiguousarray(data).view(np.uint8) if data.dtype == bool else np.ascontiguousarray(data)
        out = cv2.warpAffine(src, box._matrix(window), (box.w, box.h), borderMode=cv2.BORDER_REPLICATE,
                             flags=(cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP)
        out = out.reshape(box.h, box.w, *src.shape[2:])
        return np.ascontiguousarray(out[:, ::-1] if box.flip else out).astype(data.dtype)

    rng = np.random.default_rng(0)
    h, w = 120, 200
    arrays = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), False), (rng.normal(0, 5, (h, w, 2)).astype(np.float32), False),
              (rng.integers(0, 19, (h, w), dtype=np.uint8), True), (rng.random((h, w)) > 0.3, True)]
    for t in range(120):
        box = random_box(rng, (h, w), [1.0, 4 / 3, 2.0, 0.75][t % 4], (48, 64), 0.5)
        window = box.native_window(h, w)
        y0, y1, x0, x1 = window
        for data, nearest in arrays:
            got = box.sample(data[y0:y1, x0:x1], window, nearest=nearest)
            want = reference(box, data[y0:y1, x0:x1], window, nearest)
            assert got.dtype == want.dtype and np.array_equal(got, want)
