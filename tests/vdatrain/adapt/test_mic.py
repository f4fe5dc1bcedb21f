"""MIC block masks: square blocks of the given side, about mask_ratio of them zeroed."""

import torch

from vdatrain.adapt.mic import block_mask


def test_blocks_are_whole_and_the_kept_share_is_one_minus_the_ratio():
    torch.manual_seed(0)
    keep = block_mask(8, (128, 256), block=16, mask_ratio=0.7)  # whole blocks: both grids agree
    assert keep.shape == (8, 1, 128, 256)
    blocks = keep.unfold(2, 16, 16).unfold(3, 16, 16)  # (B, 1, 8, 16, 16, 16)
    assert torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))  # constant within each block
    assert abs(keep.mean().item() - 0.3) < 0.04


def test_partial_blocks_at_the_border_are_cropped():
    assert block_mask(1, (20, 30), block=16, mask_ratio=0.5, grid="ceil").shape == (1, 1, 20, 30)
    assert block_mask(1, (20, 30), block=16, mask_ratio=0.5).shape == (1, 1, 20, 30)


def _runs(line: torch.Tensor) -> list[int]:
    """Lengths of the runs of equal values along a 1-D mask: the cells' sides in pixels."""
    change = torch.nonzero(line[1:] != line[:-1]).flatten().tolist()
    edges = [0, *(c + 1 for c in change), len(line)]
    return [b - a for a, b in zip(edges, edges[1:])]


def test_the_grid_has_round_side_over_block_cells_as_the_references_block_mask_generator():
    """`BlockMaskGenerator`: round(side / block) cells, upsampled by nearest neighbour. 1024 / 64: 16 cells of 64;
    512 / 32 (MIC at 512 crops): 16 of 32; 720 / 64 (the BDD shifts): 11 cells of 720 / 11 = 65.45 px, i.e.
    sides of 65 or 66 px where "ceil" has 11 of 64 and a cut 16."""
    for side, block, cells in ((1024, 64, 16), (512, 32, 16), (720, 64, 11)):
        torch.manual_seed(0)
        drawn = (torch.rand(cells, cells) > 0.5).float()  # the same random numbers as the mask draws
        torch.manual_seed(0)
        keep = block_mask(1, (side, side), block, 0.5)[0, 0]
        cell_of = (torch.arange(side) * cells) // side  # nearest: floor(x * cells / side)
        assert torch.equal(keep, drawn[cell_of][:, cell_of])
        assert sorted(set(_runs(cell_of))) == ([block] if side % block == 0 else [65, 66])
    ceil = block_mask(1, (720, 720), 64, 0.5, grid="ceil")[0, 0]
    assert torch.equal(ceil, ceil[::64, ::64].repeat_interleave(64, 0).repeat_interleave(64, 1)[:720, :720])
