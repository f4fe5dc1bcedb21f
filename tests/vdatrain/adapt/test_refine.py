"""Pseudo-label refinement strategies on small label maps: the reference's invalid-warp fill, warped weights and
both oracle definitions, with our earlier rules as named variants."""

import pytest
import torch

from vdatrain.adapt.refine import IGNORE, reference_strips, refine

T = torch.tensor([[[1, 2, 3, 4]]])
K = torch.tensor([[[1, 5, 3, 6]]])
CT = torch.tensor([[[0.9, 0.9, 0.5, 0.5]]])
CK = torch.tensor([[[0.8, 0.95, 0.9, 0.4]]])
WT = torch.full((1, 1, 4), 0.5)
WK = torch.tensor([[[0.6, 0.7, 0.8, 0.9]]])  # the warped weight of t+k
VALID = torch.tensor([[[True, True, True, False]]])


def labels(strategy, invalid="frame_t", **kw):
    return refine(strategy, T, CT, WT, K, CK, WK, VALID, invalid, **kw)[0].tolist()


def test_consistency_keeps_agreement_only():
    assert labels("consistency") == [[[1, 255, 3, 4]]]
    assert labels("consistency", "ignore") == [[[1, 255, 3, 255]]]


def test_max_confidence_takes_the_surer_frame():
    assert labels("max_confidence") == [[[1, 5, 3, 4]]]
    assert labels("max_confidence", "ignore") == [[[1, 5, 3, 255]]]


def test_warp_frame_uses_the_warped_label_where_valid():
    assert labels("warp_frame") == [[[1, 5, 3, 4]]]
    assert labels("warp_frame", "ignore") == [[[1, 5, 3, 255]]]


def test_both_oracle_definitions():
    truth = torch.tensor([[[1, 5, 0, 4]]])
    # the paper's text: frame t's label where the ground truth confirms it
    assert labels("oracle", truth=truth) == [[[1, 255, 255, 4]]]
    # the reference code: the (filled) warped label of t+k where it equals the ground truth
    assert labels("oracle_warped", truth=truth) == [[[1, 5, 255, 4]]]
    assert labels("oracle_warped", "ignore", truth=truth) == [[[1, 5, 255, 255]]]
    with pytest.raises(ValueError, match="ground truth"):
        labels("oracle")


def test_reference_strips_refill_only_the_bottom_and_the_side_strips():
    # A 1024 x 1024 crop with no valid warp anywhere: only the strips (rows >= 800, columns < 100 or >= 924)
    # take frame t's label; elsewhere consistency and warp frame ignore the pixel, max confidence keeps t.
    h = w = 1024
    label_t = torch.full((1, h, w), 7)
    conf = torch.full((1, h, w), 0.9)
    weight_t = torch.full((1, h, w), 0.5)
    invalid = torch.zeros(1, h, w, dtype=torch.bool)
    warped = torch.zeros(1, h, w, dtype=torch.long)  # whatever the warp left there
    zero = torch.zeros(1, h, w)
    strips = reference_strips((h, w), "cpu")
    assert strips[799, 500].item() is False and strips[800, 500].item() is True
    assert strips[0, 99].item() is True and strips[0, 100].item() is False and strips[0, 924].item() is True
    for strategy in ("consistency", "warp_frame"):
        out, weight = refine(strategy, label_t, conf, weight_t, warped, zero, zero, invalid, "reference_strips")
        assert torch.equal(out[0] == 7, strips) and torch.equal(out[0] == IGNORE, ~strips)
        assert torch.equal(weight[0] == 0.5, strips) and (weight[0][~strips] == 0).all()
    out, weight = refine("max_confidence", label_t, conf, weight_t, warped, zero, zero, invalid, "reference_strips")
    assert (out == 7).all() and (weight == 0.5).all()


def test_the_strips_of_other_crop_heights_start_at_70_percent():
    strips = reference_strips((720, 720), "cpu")
    assert strips[:, 360].nonzero().min().item() == 503  # int(720 * 0.7): 503.99999... in floating point, as there


def test_a_valid_warp_with_zero_weight_in_the_strips_is_filled_too():
    # the reference fills where the WARPED WEIGHT is 0 (inside the strips), not only where the warp is invalid
    h, w = 1024, 256
    label_t, label_k = torch.full((1, h, w), 3), torch.full((1, h, w), 4)
    conf, valid = torch.full((1, h, w), 0.9), torch.ones(1, h, w, dtype=torch.bool)
    out, weight = refine("warp_frame", label_t, conf, torch.full((1, h, w), 0.5), label_k, conf, torch.zeros(1, h, w),
                         valid, "reference_strips")
    assert out[0, 900, 128] == 3 and weight[0, 900, 128] == 0.5  # bottom strip: frame t
    assert out[0, 10, 128] == 4 and weight[0, 10, 128] == 0  # elsewhere: the warped label with its zero weight


def test_the_warped_weight_goes_with_warped_labels():
    def weights(strategy, weight, **kw):
        out = refine(strategy, T, CT, WT, K, CK, WK, VALID, "frame_t", weight, **kw)[1]
        return [[[round(v, 6) for v in out[0, 0].tolist()]]]

    # pixel 3's warp is invalid: frame t's label and weight are filled in
    assert weights("warp_frame", "warped") == [[[0.6, 0.7, 0.8, 0.5]]]
    assert weights("max_confidence", "warped") == [[[0.5, 0.7, 0.8, 0.5]]]  # t wins pixel 0, t+k pixels 1, 2
    assert weights("consistency", "warped") == [[[0.6, 0.0, 0.8, 0.5]]]
    assert weights("oracle_warped", "warped", truth=torch.tensor([[[1, 5, 0, 4]]])) == [[[0.6, 0.7, 0.0, 0.5]]]
    assert weights("warp_frame", "frame_t") == [[[0.5, 0.5, 0.5, 0.5]]]
    assert weights("consistency", "frame_t") == [[[0.5, 0.0, 0.5, 0.5]]]
