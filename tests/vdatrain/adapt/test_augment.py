"""Strong augmentation: jitter with p = 0.8, blur with p = 0.5, odd kernels of ~10% of the side; the reference's
kornia 0.5 colour operations, kernel rounding and per-batch coins by default, ours as named variants."""

import pytest
import torch

from vdatrain.adapt.augment import (blur_kernel, gaussian_blur, kornia05_contrast, kornia05_saturation, rgb_to_hsv,
                                    hsv_to_rgb, strong_augment)
from vdatrain.recipe import AugmentSpec


def test_kernel_sizes_are_odd_and_about_a_tenth_rounded_down_as_the_reference():
    assert [blur_kernel(s) for s in (1024, 720, 512, 128, 64)] == [103, 71, 51, 13, 7]
    assert [blur_kernel(s, "round_up") for s in (1024, 720, 512, 128, 64)] == [103, 73, 53, 13, 7]


def _pixel(r, g, b):
    return torch.tensor([r, g, b]).reshape(3, 1, 1)


def test_kornia05_contrast_multiplies_and_clamps():
    out = kornia05_contrast(_pixel(0.5, 0.2, 0.9), 1.2)
    torch.testing.assert_close(out.flatten(), torch.tensor([0.6, 0.24, 1.0]))  # 0.9 * 1.2 = 1.08 -> 1


def test_kornia05_saturation_scales_s_in_hsv():
    # (0.8, 0.4, 0.2): V = 0.8, S = 0.6 / 0.8 = 0.75, H = (0.4 - 0.2) / 0.6 / 6 = 1/18 turn.
    torch.testing.assert_close(rgb_to_hsv(_pixel(0.8, 0.4, 0.2)).flatten(), torch.tensor([1 / 18, 0.75, 0.8]))
    # S x 0.8 = 0.6: p = V(1 - S) = 0.32, t = V(1 - (1 - f) S) with f = 1/3: 0.48 -> (V, t, p)
    torch.testing.assert_close(kornia05_saturation(_pixel(0.8, 0.4, 0.2), 0.8).flatten(), torch.tensor([0.8, 0.48, 0.32]))
    # S x 1.5 = 1.125, clamped to 1: p = 0, t = 0.8 / 3
    torch.testing.assert_close(kornia05_saturation(_pixel(0.8, 0.4, 0.2), 1.5).flatten(),
                               torch.tensor([0.8, 0.8 / 3, 0.0]))
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x)


@pytest.mark.parametrize("coins", ["batch", "image"])
def test_jitter_and_blur_coins_are_drawn_once_per_batch_or_per_image(coins):
    x = _normalised(torch.rand(6, 3, 8, 8))
    spec = AugmentSpec(jitter_p=0.5, blur_p=0.0, coins=coins)
    patterns = set()
    for seed in range(12):
        torch.manual_seed(seed)
        changed = ((strong_augment(x, spec) - x).abs().amax((1, 2, 3)) > 1e-4).tolist()
        patterns.add(tuple(changed))
    if coins == "batch":
        assert patterns == {(True,) * 6, (False,) * 6}
    else:
        assert any(0 < sum(p) < 6 for p in patterns)


def test_the_torchvision_variant_blends_with_grey():
    torch.manual_seed(0)
    x = _normalised(torch.rand(1, 3, 8, 8))
    a = strong_augment(x, AugmentSpec(jitter_p=1.0, blur_p=0.0))
    torch.manual_seed(0)
    b = strong_augment(x, AugmentSpec(jitter_p=1.0, blur_p=0.0, jitter="torchvision"))
    assert (a - b).abs().max() > 1e-3  # the same draws, different contrast and saturation


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


@pytest.mark.parametrize("draws", ["batch", "image"])
def test_on_mics_path_the_jitter_order_and_blur_sigma_are_drawn_once_for_the_batch(draws):
    """MIC augments the whole target batch in one call (the reference's `strong_transform` on the batch): one
    jitter order and one blur sigma for all images ("batch"); per image on the mixed path. With the factors'
    ranges at zero, jitter only permutes identity operations, so a batch of equal images differs between images
    only by the blur sigma: equal under "batch", different under "image"."""
    x = _normalised(torch.rand(1, 3, 64, 64).expand(4, -1, -1, -1).contiguous())  # a 7-px kernel
    spec = AugmentSpec(jitter_p=1.0, blur_p=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    torch.manual_seed(0)
    out = strong_augment(x, spec, draws)
    same = [torch.allclose(out[0], out[i]) for i in range(1, 4)]
    assert same == ([True] * 3 if draws == "batch" else [False] * 3)
    assert not torch.allclose(out, x)  # blurred
