"""Pseudo-label refinement strategies on small label maps."""

import pytest
import torch

from vdatrain.adapt.refine import refine

T = torch.tensor([[[1, 2, 3, 4]]])
K = torch.tensor([[[1, 5, 3, 6]]])
CT = torch.tensor([[[0.9, 0.9, 0.5, 0.5]]])
CK = torch.tensor([[[0.8, 0.95, 0.9, 0.4]]])
VALID = torch.tensor([[[True, True, True, False]]])


def test_consistency_keeps_agreement_only():
    assert refine("consistency", T, CT, K, CK, VALID).tolist() == [[[1, 255, 3, 4]]]
    assert refine("consistency", T, CT, K, CK, VALID, invalid="ignore").tolist() == [[[1, 255, 3, 255]]]


def test_max_confidence_takes_the_surer_frame():
    assert refine("max_confidence", T, CT, K, CK, VALID).tolist() == [[[1, 5, 3, 4]]]


def test_warp_frame_uses_the_warped_label_where_valid():
    assert refine("warp_frame", T, CT, K, CK, VALID).tolist() == [[[1, 5, 3, 4]]]
    assert refine("warp_frame", T, CT, K, CK, VALID, invalid="ignore").tolist() == [[[1, 5, 3, 255]]]


def test_oracle_keeps_what_the_ground_truth_confirms():
    truth = torch.tensor([[[1, 2, 0, 0]]])
    assert refine("oracle", T, CT, K, CK, VALID, truth=truth).tolist() == [[[1, 2, 255, 255]]]
    with pytest.raises(ValueError, match="ground truth"):
        refine("oracle", T, CT, K, CK, VALID)
