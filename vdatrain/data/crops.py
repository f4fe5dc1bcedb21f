"""Crops: native store windows -> the model's crops, the one geometry of frames, flows, masks and labels.

The loader copies each sample's native window (frames uint8, flows int16 fixed point, validity bool)
once into a batch and hands over its `CropBox`; this module resizes, crops and flips those windows
where the model runs, so the CPU does no resampling and no float work, and 4-8x fewer bytes cross the
worker queue and the PCIe bus.

Geometry is OpenCV's, as the CPU path (`CropBox.sample`) computed it: the same affine map, source
coordinates quantised the way `cv2.warpAffine` quantises them (1/32 px for bilinear, rounded to the
nearest pixel for nearest), the frame's edge replicated. So nearest-sampled arrays (validity, margins)
are bit-identical to the CPU path, and bilinear ones differ only in arithmetic: frames by at most one
grey level (OpenCV rounds its 8-bit result, we keep the float), flows by float rounding (~1e-6 px).
Labels are cropped on the CPU (`label_crop`), where the crop search reads them: by default with OpenCV's
`resize` rule (floor(x / scale), what the reference's labels were resized with), or with the same nearest
taps as the masks.
"""

from __future__ import annotations

import numpy as np
import torch

from flowprep.store import layout as L
from vdatrain.data.normalise import normalise_batch

AB_BITS = 10  # cv2.warpAffine's fixed-point coordinate precision (bits)
INTER_BITS = 5  # bilinear sub-pixel positions: 1/32 px


def _fixed(n: int, start: int, scale: float, offset: int, *, combined: bool, device) -> torch.Tensor:
    """(n,) int64: source coordinates of output pixels start..start+n-1, in 1/1024 px, as cv2.warpAffine forms
    them. The map is x_src = (x + 0.5) / scale - 0.5 - offset (pixel centres aligned, window coordinates);
    OpenCV rounds m0 * x and m2 separately along x, and m1 * y + m2 as one sum along y (`combined`)."""
    m0, m2 = 1 / scale, (start + 0.5) / scale - 0.5 - offset
    x = torch.arange(n, dtype=torch.float64, device=device)
    if combined:
        return torch.round((m0 * x + m2) * (1 << AB_BITS)).long()
    return torch.round(m0 * x * (1 << AB_BITS)).long() + int(np.rint(m2 * (1 << AB_BITS)))


def linear_taps(n: int, start: int, scale: float, offset: int, size: int, *, flip: bool = False,
                combined: bool = False, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps of `n` output pixels along one axis of a `size`-pixel window: (i0, i1, weight of i1),
    indices clamped to the window (its edge replicated), reversed when flipped."""
    q = (_fixed(n, start, scale, offset, combined=combined, device=device)
         + (1 << (AB_BITS - INTER_BITS - 1))) >> (AB_BITS - INTER_BITS)
    i0 = q >> INTER_BITS
    frac = (q & ((1 << INTER_BITS) - 1)).float() / (1 << INTER_BITS)
    taps = (i0.clamp(0, size - 1), (i0 + 1).clamp(0, size - 1), frac)
    return tuple(t.flip(0) for t in taps) if flip else taps


def nearest_taps(n: int, start: int, scale: float, offset: int, size: int, *, flip: bool = False,
                 combined: bool = False, device=None) -> torch.Tensor:
    """(n,) nearest window pixel of each output pixel along one axis, as cv2.INTER_NEAREST picks it."""
    i = ((_fixed(n, start, scale, offset, combined=combined, device=device) + (1 << (AB_BITS - 1))) >> AB_BITS)
    i = i.clamp(0, size - 1)
    return i.flip(0) if flip else i


def floor_taps(n: int, start: int, native: int, resized: int, offset: int, *, flip: bool = False) -> np.ndarray:
    """(n,) window pixels of output pixels start..start+n-1 along one axis, as OpenCV's `resize` with
    INTER_NEAREST picks them: floor(x * native / resized), computed in double as OpenCV does, clamped."""
    ifx = 1.0 / (resized / native)
    i = np.minimum(np.floor(np.arange(start, start + n, dtype=np.float64) * ifx).astype(np.int64), native - 1)
    i -= offset
    return i[::-1] if flip else i


def label_crop(label: np.ndarray, box, window, rule: str = "floor", native: tuple[int, int] | None = None) -> np.ndarray:
    """(wh, ww) uint8 native label window (`box.native_window`) -> (h, w) crop of `box` (a `CropBox`) of a frame of
    `native` (H, W) pixels, by nearest neighbour: "floor", OpenCV's `resize` (the reference resized labels so),
    or "centre", the nearest pixel centre as the device crops sample masks. On the CPU, for the crop search."""
    wy0, wy1, wx0, wx1 = window
    if box.scale == 1:
        out = label[box.y0 - wy0:box.y0 - wy0 + box.h, box.x0 - wx0:box.x0 - wx0 + box.w]
        return np.array(out[:, ::-1] if box.flip else out)
    if rule == "floor":
        (nh, nw) = native
        ny = floor_taps(box.h, box.y0, nh, round(nh * box.scale), wy0)
        nx = floor_taps(box.w, box.x0, nw, round(nw * box.scale), wx0, flip=box.flip)
    else:
        ny = nearest_taps(box.h, box.y0, box.scale, wy0, wy1 - wy0, combined=True).numpy()
        nx = nearest_taps(box.w, box.x0, box.scale, wx0, wx1 - wx0, flip=box.flip).numpy()
    return label[ny[:, None], nx[None, :]]


def _linear(window: torch.Tensor, ty, tx, dim: int) -> torch.Tensor:
    """Bilinear resampling of `window`'s axes (dim, dim + 1) with taps (i0, i1, w1) per axis, in float32."""
    rows = [window.index_select(dim, i).float() for i in ty[:2]]
    out = torch.lerp(rows[0], rows[1], ty[2].view(-1, *(1,) * (window.dim() - dim - 1)))
    cols = [out.index_select(dim + 1, i) for i in tx[:2]]
    return torch.lerp(cols[0], cols[1], tx[2].view(-1, *(1,) * (window.dim() - dim - 2)))


def _shifted(window: torch.Tensor, y0: int, x0: int, h: int, w: int, flip: bool, dim: int) -> torch.Tensor:
    """A whole-pixel crop of `window`'s axes (dim, dim + 1), in float32: what `_linear` gives at zero weights,
    without the gathers."""
    out = window.narrow(dim, y0, h).narrow(dim + 1, x0, w).float()
    return out.flip(dim + 1) if flip else out


def crop_part(part: dict, device: torch.device) -> dict:
    """One stream of a loader batch (see `StoreSamples.batch`), moved to `device` and cropped there:

    - "image": (B, F, Hw, Ww, 3) uint8 windows -> (B, F, 3, h, w) float32, resampled then normalised
    - "flow/<pair>": (B, Hw, Ww, 2) int16 (1/32 px) -> (B, 2, h, w) float32 pixels of the crop (scaled by the
      box's scale, u negated when flipped)
    - "valid/<pair>": (B, Hw, Ww) bool -> (B, h, w) bool
    - "label": (B, h, w) uint8 crops (made on the CPU, where the crop search reads them) -> int64
    - "margin": the native rectangles kept by the margins -> (B, h, w) float32 1/0
    Lists ("index", "id", "box", "window") pass through.
    """
    moved = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in part.items()}
    out = {k: v for k, v in moved.items() if not (k in ("image", "margin") or k.startswith(("flow/", "valid/")))}
    if "label" in out:
        out["label"] = out["label"].long()
    flow_keys = [k for k in moved if k.startswith("flow/")]
    valid_keys = [k for k in moved if k.startswith("valid/")]
    images, flows, valids, margins = [], {k: [] for k in flow_keys}, {k: [] for k in valid_keys}, []
    for b, (box, window) in enumerate(zip(part["box"], part["window"])):
        scale, y0, x0, h, w, flip = box.scale, box.y0, box.x0, box.h, box.w, box.flip
        wy0, wy1, wx0, wx1 = window
        if scale == 1:  # whole-pixel crops (targets at native size): slices, the values themselves
            def sample(data, dim):
                return _shifted(data, y0 - wy0, x0 - wx0, h, w, flip, dim)
        else:
            ty = linear_taps(h, y0, scale, wy0, wy1 - wy0, combined=True, device=device)
            tx = linear_taps(w, x0, scale, wx0, wx1 - wx0, flip=flip, device=device)

            def sample(data, dim):
                return _linear(data, ty, tx, dim)
        images.append(sample(moved["image"][b], 1))  # (F, h, w, 3)
        for key in flow_keys:
            flow = sample(moved[key][b], 0) * np.float32(scale / L.FLOW_SCALE)  # (h, w, 2) px
            if flip:
                flow[..., 0] *= -1
            flows[key].append(flow.permute(2, 0, 1))
        if valid_keys or "margin" in part:
            ny = nearest_taps(h, y0, scale, wy0, wy1 - wy0, combined=True, device=device)
            nx = nearest_taps(w, x0, scale, wx0, wx1 - wx0, flip=flip, device=device)
        for key in valid_keys:
            valids[key].append(moved[key][b].index_select(0, ny).index_select(1, nx))
        if "margin" in part:
            my0, my1, mx0, mx1 = part["margin"][b]
            inside_y = ((ny + wy0) >= my0) & ((ny + wy0) < my1)
            inside_x = ((nx + wx0) >= mx0) & ((nx + wx0) < mx1)
            margins.append((inside_y[:, None] & inside_x[None, :]).float())
    out["image"] = normalise_batch(torch.stack(images))
    out |= {k: torch.stack(v) for k, v in flows.items()} | {k: torch.stack(v) for k, v in valids.items()}
    if margins:
        out["margin"] = torch.stack(margins)
    return out
