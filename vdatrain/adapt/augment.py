"""DACS strong augmentation: colour jitter and Gaussian blur, on normalised tensors.

Colour jitter is applied with probability `jitter_p` (0.8; the reference's parameter
named "probability 0.2" is the probability of skipping it): brightness (additive,
+-0.2 on 0..1 intensities), contrast, saturation (factors in 1 +- 0.2) and hue
(+-0.2 turns) in a random order, factors drawn per image. Blur with probability
0.5, sigma ~ U(0.15, 1.15) per image, an odd kernel of about 10% of each side.
Images come in and go out ImageNet-normalised.

Named variants (recipe `adapt.augment`; the defaults are the reference's, which
produced the paper's numbers, see docs/fidelity.md):
- `jitter: kornia05` (reference: DACS/DAFormer call kornia 0.5's ColorJitter):
  contrast MULTIPLIES, x * c clamped to 0..1; saturation scales the S channel in
  HSV, clamped; hue shifts H. `torchvision`: contrast and saturation blend with the
  grey mean / the greyscale image (PIL's definitions). Brightness and hue agree.
- `blur_kernel: round_down` (reference): ceil(0.1 * side), made odd by going down
  when even (1024 -> 103, 720 -> 71, 512 -> 51); `round_up` goes up (73, 53).
- `coins: batch` (reference): the jitter coin and the blur coin are drawn once for
  the whole batch; `image`: per image.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

from vdatrain.data.normalise import unit_mean_std


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def blur_kernel(side: int, rule: str = "round_down") -> int:
    """An odd kernel size of about 10% of `side`: ceil(0.1 * side), an even one made odd by `rule`."""
    k = math.ceil(0.1 * side)
    return k if k % 2 else (k - 1 if rule == "round_down" else k + 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in 0..1 -> HSV with H in [0, 1) turns, S and V in 0..1."""
    r, g, b = x.unbind(-3)
    v, _ = x.max(-3)
    c = v - x.min(-3)[0]
    s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
    cc = c.clamp_min(1e-12)
    h = torch.where(v == r, ((g - b) / cc) % 6, torch.where(v == g, (b - r) / cc + 2, (r - g) / cc + 4))
    h = torch.where(c > 0, h / 6, torch.zeros_like(h))
    return torch.stack([h, s, v], -3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv` (H taken modulo one turn)."""
    h, s, v = x.unbind(-3)
    h6 = (h % 1.0) * 6
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.long() % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(table):
        for ch in range(3):
            out[ch] = torch.where(i == k, rgb[ch], out[ch])
    return torch.stack(out, -3)


def kornia05_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor).clamp(0, 1)


def kornia05_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    return hsv_to_rgb(torch.stack([hsv[..., 0, :, :], (hsv[..., 1, :, :] * factor).clamp(0, 1), hsv[..., 2, :, :]], -3))


def jitter_ops(spec) -> list:
    """The four colour operations on (..., 3, H, W) 0..1 images, each drawing its factor when called."""
    contrast = kornia05_contrast if spec.jitter == "kornia05" else TF.adjust_contrast
    saturation = kornia05_saturation if spec.jitter == "kornia05" else TF.adjust_saturation
    return [lambda x: (x + _uniform(-spec.brightness, spec.brightness)).clamp(0, 1),
            lambda x: contrast(x, _uniform(1 - spec.contrast, 1 + spec.contrast)),
            lambda x: saturation(x, _uniform(1 - spec.saturation, 1 + spec.saturation)),
            lambda x: TF.adjust_hue(x, _uniform(-spec.hue, spec.hue))]


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


def strong_augment(images: torch.Tensor, spec, draws: str = "image") -> torch.Tensor:
    """(B, 3, H, W) normalised -> augmented, normalised; `spec` is a recipe's adapt.augment.

    (B, F, 3, H, W) -> the same: the F frames of an image share one draw. The jitter and blur coins are drawn
    per `spec.coins`; the jitter factors per image; the jitter order and the blur sigma per image, or once for
    the batch with `draws="batch"` (the reference's one call on a whole batch, as on MIC's path; per image on
    the mixed path, where it called the augmentation image by image)."""
    mean, std = unit_mean_std(images.device)
    if spec.coins == "batch":
        jitter, blur = float(torch.rand(())) < spec.jitter_p, float(torch.rand(())) < spec.blur_p
    if draws == "batch":
        order, sigma = torch.randperm(4).tolist(), _uniform(*spec.blur_sigma)
    ops = jitter_ops(spec)
    out = []
    for img in images.float():
        x = (img * std + mean).clamp(0, 1)
        if spec.coins == "image":
            jitter = float(torch.rand(())) < spec.jitter_p
        if jitter:
            for i in (order if draws == "batch" else torch.randperm(len(ops)).tolist()):
                x = ops[i](x)
        if spec.coins == "image":
            blur = float(torch.rand(())) < spec.blur_p
        if blur:
            s = sigma if draws == "batch" else _uniform(*spec.blur_sigma)
            x = gaussian_blur(x, (blur_kernel(x.shape[-1], spec.blur_kernel), blur_kernel(x.shape[-2], spec.blur_kernel)),
                              s)
        out.append((x - mean) / std)
    return torch.stack(out).to(images.dtype)
