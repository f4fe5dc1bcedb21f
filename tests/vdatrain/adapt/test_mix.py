"""ClassMix: ceil(n/2) of the batch's source classes, per image; source inside the mask, target outside. The
void label is a candidate as in the reference (`adapt.mix_ignore: candidate`) or not (`excluded`)."""

import pytest
import torch

from vdatrain.adapt.mix import class_masks, mix
from vdatrain.recipe import AdaptSpec

EXCLUDED = AdaptSpec(mix_ignore="excluded")


def test_half_the_classes_of_the_batch_rounded_up_are_pasted():
    labels = torch.tensor([[[0, 1], [2, 255]], [[3, 3], [4, 0]]])  # 5 classes in the batch, ignore excluded
    torch.manual_seed(0)
    for _ in range(20):
        masks = class_masks(labels, EXCLUDED)
        for img, m in zip(labels, masks):
            inside = set(img[m.bool()].tolist())
            assert 255 not in inside
        # each image's mask is the set membership of 3 classes drawn from {0..4}
        assert masks.shape == (2, 2, 2) and masks.dtype == torch.float32


def test_the_drawn_classes_are_ceil_half_of_the_union():
    labels = torch.arange(5).repeat(1, 1, 1)  # one image holding classes 0..4, one pixel each
    torch.manual_seed(1)
    assert int(class_masks(labels).sum()) == 3


def test_mixed_label_and_weight():
    mask = torch.tensor([[[1.0, 0.0]]])
    ys, pl = torch.tensor([[[7, 7]]]), torch.tensor([[[2, 2]]])
    pw = torch.full((1, 1, 2), 0.4)
    assert mix(mask, ys, pl).tolist() == [[[7, 2]]]
    assert mix(mask, torch.ones_like(pw), pw).tolist() == [[[1.0, 0.4000000059604645]]]
    xs, xt = torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    assert mix(mask, xs, xt)[0, :, 0].tolist() == [[1.0, 0.0]] * 3


def test_every_half_of_the_classes_is_equally_likely():
    """The device-side draw (random keys, the ceil(n/2) smallest of the present classes) is uniform over subsets."""
    labels = torch.tensor([[[0, 3, 7, 12]]])  # 4 classes: C(4, 2) = 6 possible halves
    torch.manual_seed(2)
    counts = {}
    for _ in range(1200):
        m = class_masks(labels, EXCLUDED)[0, 0]
        chosen = tuple(labels[0, 0][m.bool()].tolist())
        assert len(chosen) == 2
        counts[chosen] = counts.get(chosen, 0) + 1
    assert len(counts) == 6 and all(150 < c < 250 for c in counts.values())


def test_the_void_label_is_a_candidate_as_in_the_reference():
    """6 classes and void: the reference's `get_class_masks` draws ceil(7/2) = 4 of the 7 values of
    `torch.unique`, 255 included. So void pixels are pasted in 4/7 = 0.571 of the draws, and a real class with
    probability 4/7 too (with void excluded: ceil(6/2) = 3 of 6, 0.5). 7000 draws, fixed seed; the binomial's
    standard deviation is 0.006, the tolerance 0.02 (3 sigma)."""
    labels = torch.tensor([[[0, 1, 2, 3, 4, 5, 255]]])
    torch.manual_seed(3)
    n = 7000
    masks = class_masks(labels.expand(n, 1, 7).contiguous(), AdaptSpec())  # one draw per image
    pasted = masks[:, 0]
    assert pasted.sum(1).eq(4).all()  # always 4 of the 7 values
    assert pasted[:, 6].mean().item() == pytest.approx(4 / 7, abs=0.02)  # void pasted in 57% of the draws
    assert pasted[:, :6].mean().item() == pytest.approx(4 / 7, abs=0.02)  # a real class: 0.57, not 0.50
    excluded = class_masks(labels.expand(n, 1, 7).contiguous(), EXCLUDED)[:, 0]
    assert excluded[:, 6].eq(0).all() and excluded[:, :6].mean().item() == pytest.approx(0.5, abs=0.02)
