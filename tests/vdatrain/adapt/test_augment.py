"""Strong augmentation: jitter with p = 0.8, blur with p = 0.5, odd kernels of ~10% of the side."""

import torch

from vdatrain.adapt.augment import blur_kernel, gaussian_blur, strong_augment
from vdatrain.recipe import AugmentSpec


def test_kernel_sizes_are_odd_and_about_a_tenth():
    assert [blur_kernel(s) for s in (1024, 512, 128, 64)] == [103, 53, 13, 7]


def _normalised(rgb01):
    mean = torch.tensor([123.675, 116.28, 103.53])[:, None, None]
    std = torch.tensor([58.395, 57.12, 57.375])[:, None, None]
    return (rgb01 * 255 - mean) / std


def test_nothing_changes_with_both_probabilities_zero_and_both_apply_at_one():
    torch.manual_seed(0)
    x = _normalised(torch.rand(2, 3, 32, 32))
    off = AugmentSpec(jitter_p=0.0, blur_p=0.0)
    torch.testing.assert_close(strong_augment(x, off), x, atol=1e-5, rtol=0)
    on = strong_augment(x, AugmentSpec(jitter_p=1.0, blur_p=1.0))
    assert on.shape == x.shape and (on - x).abs().mean() > 0.05


def test_jitter_is_applied_about_eighty_percent_of_the_time():
    torch.manual_seed(0)
    x = _normalised(torch.rand(1, 3, 8, 8))
    changed = sum(bool((strong_augment(x, AugmentSpec(blur_p=0.0)) - x).abs().max() > 1e-4) for _ in range(300))
    assert 0.72 < changed / 300 < 0.88


def test_separable_blur_equals_torchvisions_two_dimensional_kernel():
    import torchvision.transforms.v2.functional as TF

    x = torch.rand(2, 3, 70, 130)  # two frames of one image (consistent mixup)
    for kernel, sigma in (((13, 7), 0.15), ((7, 7), 1.15), ((53, 53), 0.8)):
        expected = TF.gaussian_blur(x, list(kernel), [sigma, sigma])
        torch.testing.assert_close(gaussian_blur(x, kernel, sigma), expected, rtol=0, atol=2e-6)
