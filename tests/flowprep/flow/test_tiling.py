"""Tiles cover the frame, and blending returns the per-tile values where tiles agree."""

import numpy as np
import pytest

import torch

from flowprep.flow.tiling import blend, blend_weights, tile_boxes


@pytest.mark.parametrize("h,w,tile,overlap", [(1024, 2048, (432, 960), 64), (720, 1280, (432, 960), 32),
                                              (64, 128, (48, 64), 16), (50, 50, (64, 64), 8)])
def test_tiles_cover_every_pixel_with_the_requested_overlap(h, w, tile, overlap):
    boxes = tile_boxes(h, w, tile, overlap)
    cover = np.zeros((h, w), int)
    for y0, y1, x0, x1 in boxes:
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        assert (y1 - y0, x1 - x0) == (min(tile[0], h), min(tile[1], w))
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    if len(boxes) > 1:
        xs = sorted({b[2] for b in boxes})
        assert all(b - a <= min(tile[1], w) - overlap for a, b in zip(xs, xs[1:]))


def test_blending_a_constant_field_gives_it_back_and_weights_never_vanish():
    h, w = 100, 180
    boxes = tile_boxes(h, w, (60, 80), 20)
    out = blend([torch.full((60, 80, 2), 3.5) for _ in boxes], boxes, h, w, ramp=20).numpy()
    np.testing.assert_allclose(out, 3.5, rtol=1e-6)
    for box in boxes:
        assert blend_weights(box, h, w, 20).min() > 0


def test_blending_is_exact_on_a_smooth_field_split_into_tiles():
    h, w = 90, 160
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.stack([x * 0.1, y * -0.05], -1)
    boxes = tile_boxes(h, w, (64, 96), 24)
    out = blend([torch.from_numpy(field[y0:y1, x0:x1]) for y0, y1, x0, x1 in boxes], boxes, h, w, ramp=24).numpy()
    np.testing.assert_allclose(out, field, atol=1e-5)
