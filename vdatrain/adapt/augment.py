"""DACS strong augmentation: colour jitter and Gaussian blur, per image, on normalised tensors.

Colour jitter is applied with probability `jitter_p` (0.8; the reference's parameter
named "probability 0.2" is the probability of skipping it): brightness (additive,
+-0.2 on 0..1 intensities), contrast, saturation (factors in 1 +- 0.2) and hue
(+-0.2 turns) in a random order. Blur with probability 0.5, sigma ~ U(0.15, 1.15),
an odd kernel of about 10% of each side. Images come in and go out ImageNet-normalised.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

from vdatrain.data.samples import IMAGENET_MEAN, IMAGENET_STD


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def blur_kernel(side: int) -> int:
    """An odd kernel size of about 10% of `side` (DACS' rule)."""
    k = math.ceil(0.1 * side)
    return k + 1 - k % 2


def gaussian_blur(x: torch.Tensor, kernel: tuple[int, int], sigma: float) -> torch.Tensor:
    """(..., H, W) -> blurred, as torchvision's `gaussian_blur` (reflect padding, kernel (kx, ky)) but as
    two 1-D passes: the same result up to float rounding at 2k instead of k^2 multiply-adds per pixel
    (k is ~103 at 1024 crops, where the 2-D kernel costs seconds per image on a CPU)."""
    kx, ky = kernel
    taps = []
    for k in (kx, ky):
        t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=x.device, dtype=x.dtype)
        w = torch.exp(-0.5 * (t / sigma) ** 2)
        taps.append(w / w.sum())
    planes = x.reshape(1, -1, *x.shape[-2:])  # every leading index (frame, channel) is one plane
    c = planes.shape[1]
    y = torch.nn.functional.pad(planes, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
    y = torch.nn.functional.conv2d(y, taps[0].expand(c, 1, 1, kx), groups=c)
    return torch.nn.functional.conv2d(y, taps[1][:, None].expand(c, 1, ky, 1), groups=c).reshape(x.shape)


def strong_augment(images: torch.Tensor, spec) -> torch.Tensor:
    """(B, 3, H, W) normalised -> augmented, normalised; `spec` is a recipe's adapt.augment.

    (B, F, 3, H, W) -> the same: the F frames of an image share one draw (consistent mixup)."""
    mean = torch.as_tensor(IMAGENET_MEAN / 255, device=images.device)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD / 255, device=images.device)[:, None, None]
    out = []
    for img in images.float():
        x = (img * std + mean).clamp(0, 1)
        if float(torch.rand(())) < spec.jitter_p:
            ops = [lambda x: (x + _uniform(-spec.brightness, spec.brightness)).clamp(0, 1),
                   lambda x: TF.adjust_contrast(x, _uniform(1 - spec.contrast, 1 + spec.contrast)),
                   lambda x: TF.adjust_saturation(x, _uniform(1 - spec.saturation, 1 + spec.saturation)),
                   lambda x: TF.adjust_hue(x, _uniform(-spec.hue, spec.hue))]
            for i in torch.randperm(len(ops)).tolist():
                x = ops[i](x)
        if float(torch.rand(())) < spec.blur_p:
            sigma = _uniform(*spec.blur_sigma)
            x = gaussian_blur(x, (blur_kernel(x.shape[-1]), blur_kernel(x.shape[-2])), sigma)
        out.append((x - mean) / std)
    return torch.stack(out).to(images.dtype)
