"""MIC block masks: square blocks of the given side, about mask_ratio of them zeroed."""

import torch

from vdatrain.adapt.mic import block_mask


def test_blocks_are_whole_and_the_kept_share_is_one_minus_the_ratio():
    torch.manual_seed(0)
    keep = block_mask(8, (128, 256), block=16, mask_ratio=0.7)
    assert keep.shape == (8, 1, 128, 256)
    blocks = keep.unfold(2, 16, 16).unfold(3, 16, 16)  # (B, 1, 8, 16, 16, 16)
    assert torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))  # constant within each block
    assert abs(keep.mean().item() - 0.3) < 0.04


def test_partial_blocks_at_the_border_are_cropped():
    assert block_mask(1, (20, 30), block=16, mask_ratio=0.5).shape == (1, 1, 20, 30)
