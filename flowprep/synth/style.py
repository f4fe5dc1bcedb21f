"""Appearance: how a domain paints the geometry. This is where the domain gap lives.

Textures are functions of surface coordinates (s, t) in metres, so they move
exactly with the flow. The two sources look like clean game renders (flat
shading, saturated palettes, no sensor effects); the two targets get detailed
textures, their own palettes and lighting, blur, sensor noise and, later,
lossy compression. BDD is dusk to the Cityscapes overcast day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from flowprep.synth import world as W
from flowprep.synth.render import HOOD_ID, SKY_ID, Geometry

# A neutral palette (RGB 0..1) that styles tint and override.
BASE = {
    W.ROAD: (0.36, 0.34, 0.37), W.SIDEWALK: (0.62, 0.58, 0.56), W.BUILDING: (0.55, 0.50, 0.45),
    W.WALL: (0.62, 0.60, 0.55), W.FENCE: (0.50, 0.42, 0.32), W.POLE: (0.45, 0.45, 0.47),
    W.LIGHT: (0.12, 0.12, 0.10), W.SIGN: (0.15, 0.30, 0.70), W.VEGETATION: (0.22, 0.42, 0.15),
    W.TERRAIN: (0.45, 0.55, 0.25), W.SKY: (0.55, 0.70, 0.90), W.PERSON: (0.5, 0.3, 0.3),
    W.RIDER: (0.5, 0.3, 0.3), W.CAR: (0.5, 0.5, 0.5), W.TRUCK: (0.75, 0.75, 0.72), W.BUS: (0.85, 0.70, 0.15),
    W.TRAIN: (0.70, 0.15, 0.12), W.MOTORCYCLE: (0.10, 0.10, 0.12), W.BICYCLE: (0.20, 0.22, 0.25),
    W.VAN: (0.85, 0.85, 0.82), W.LANE: (0.92, 0.92, 0.88), W.EGO: (0.08, 0.08, 0.09),
}


@dataclass
class Style:
    name: str
    palette: dict = field(default_factory=dict)  # overrides of BASE
    saturation: float = 1.0
    detail: float = 0.05  # amplitude of fine surface texture
    shading: float = 0.25  # brightness difference between surface orientations (flat shading)
    sky_top: tuple = (0.35, 0.55, 0.90)
    sky_horizon: tuple = (0.75, 0.85, 0.95)
    clouds: float = 0.1
    tint: tuple = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    gamma: float = 1.0
    vignette: float = 0.0
    blur: float = 0.0  # Gaussian sigma as a fraction of the image width
    noise: float = 0.0  # sensor noise std (0..1 intensity)
    headlights: bool = False

    def colour(self, cls: int) -> np.ndarray:
        c = np.array(self.palette.get(cls, BASE[cls]), dtype=np.float64)
        grey = c.mean()
        return np.clip(grey + (c - grey) * self.saturation, 0, 1)


STYLES = {
    # GTA-like: sunny, saturated, warm; crisp.
    "viper": Style("viper", {W.ROAD: (0.30, 0.28, 0.34), W.VEGETATION: (0.20, 0.55, 0.12), W.BUILDING: (0.70, 0.58, 0.42)},
                   saturation=1.35, detail=0.04, shading=0.3, tint=(1.08, 1.0, 0.9), clouds=0.05),
    # Synthia dawn: orange light, pastel city, flat.
    "synthia-seq": Style("synthia-seq", {W.ROAD: (0.42, 0.40, 0.40), W.SIDEWALK: (0.75, 0.62, 0.55)},
                         saturation=1.2, detail=0.12, shading=0.35, sky_top=(0.55, 0.50, 0.75),
                         sky_horizon=(0.98, 0.70, 0.45), tint=(1.05, 0.98, 0.92), exposure=0.95, clouds=0.0),
    # Cityscapes: overcast German city, desaturated, textured, slightly blurred and noisy.
    "cityscapes-seq": Style("cityscapes-seq", {W.BUILDING: (0.52, 0.50, 0.48), W.VEGETATION: (0.28, 0.36, 0.20)},
                            saturation=0.55, detail=0.2, shading=0.08, sky_top=(0.78, 0.80, 0.84),
                            sky_horizon=(0.90, 0.90, 0.90), clouds=0.15, tint=(0.97, 1.0, 1.02), exposure=1.15,
                            vignette=0.25, blur=0.0025, noise=0.015),
    # BDD: dusk dashcam, dark and blue, noisy, blurrier, headlight glow.
    "bdd": Style("bdd", {W.ROAD: (0.30, 0.30, 0.32), W.SKY: (0.2, 0.2, 0.3)}, saturation=0.75, detail=0.15,
                 shading=0.1, sky_top=(0.10, 0.12, 0.25), sky_horizon=(0.45, 0.35, 0.40), clouds=0.05,
                 tint=(0.9, 0.95, 1.1), exposure=1.1, gamma=1.05, vignette=0.35, blur=0.004, noise=0.03,
                 headlights=True),
}


def _waves(a, b, seed: float, scale: float, fp=None) -> np.ndarray:
    """Smooth pseudo-noise in [-1, 1]: a few oblique sinusoids of (a, b) metres.

    Continuous, so it moves exactly with the surface. With a pixel footprint `fp`
    (..., 2) in metres, components that change by more than about a radian per
    pixel are attenuated (a Gaussian prefilter), as mipmapping would: unfiltered
    they alias, and aliasing does not follow the flow.
    """
    out = np.zeros_like(a)
    for k, (fa, fb) in enumerate(((1.0, 0.37), (0.61, 1.3), (1.9, -0.83), (-2.7, 2.1))):
        wave = np.sin(scale * (fa * a + fb * b) + seed * (k + 1.7))
        if fp is not None:
            per_pixel = scale * (abs(fa) * fp[..., 0] + abs(fb) * fp[..., 1])
            wave = wave * np.exp(-np.square(np.minimum(per_pixel, 10.0)))
        out += wave / (k + 1)
    return out / 2.08


def _band(x, lo: float, hi: float, fp) -> np.ndarray:
    """Fraction of the pixel footprint [x - fp/2, x + fp/2] inside [lo, hi] (box-filtered edge)."""
    fp = np.maximum(fp, 1e-6)
    return (np.clip(x + fp / 2, lo, hi) - np.clip(x - fp / 2, lo, hi)) / fp


def _stripes(x, period: float, lo: float, hi: float, fp) -> np.ndarray:
    """Fraction of the pixel footprint inside the stripes [lo, hi] + n * period (box-filtered)."""
    fp = np.maximum(fp, 1e-6)

    def covered(y):  # length of stripes in (-inf, y] up to a constant
        n = np.floor(y / period)
        return n * (hi - lo) + np.clip(y - n * period - lo, 0, hi - lo)

    return np.clip((covered(x + fp / 2) - covered(x - fp / 2)) / fp, 0, 1)


def lane_coverage(x, z, fp, road_half: float) -> np.ndarray:
    """Painted fraction of a ground pixel: dashed centre line and solid edge lines (as `ground_class`)."""
    fx, fz = fp[..., 0], fp[..., 1]
    centre = _band(x, -0.08, 0.08, fx) * _stripes(z, 9.0, 0.0, 4.0, fz)
    edge = road_half - 0.35
    return np.clip(centre + _band(x, edge - 0.07, edge + 0.07, fx) + _band(x, -edge - 0.07, -edge + 0.07, fx), 0, 1)


def shade(geom: Geometry, scene: W.Scene, style: Style, frame_seed: int) -> np.ndarray:
    """Paint one frame: (H, W, 3) uint8 RGB."""
    h, w = geom.cls.shape
    img = np.zeros((h, w, 3))
    cls, s, t = geom.cls, geom.s, geom.t
    obj = geom.surface >= 0
    sid = np.where(obj, geom.surface, 0)
    tone = scene.tone[sid]
    size_s, size_t = scene.size[sid, 0], scene.size[sid, 1]
    u, v = s / np.maximum(size_s, 1e-6), t / np.maximum(size_t, 1e-6)
    fp = np.where(np.isfinite(geom.footprint), geom.footprint, 1e3)
    fs, ft = fp[..., 0], fp[..., 1]
    tex = _waves(s, t, scene.sky_seed + tone, 2.5, fp)
    fine = _waves(s, t, scene.sky_seed * 1.3 + tone, 11.0, fp)

    for c in np.unique(cls):
        m = cls == c
        img[m] = style.colour(int(c))
    custom = scene.has_colour[sid] & obj
    if custom.any():
        img[custom] = scene.colours[sid][custom]
    img *= (1 + 0.12 * tone)[..., None]

    # Surface detail. Large regular patterns (windows, tiles, slats, lane markings) are box-filtered
    # over the pixel footprint; small details inside objects are painted by mask.
    def paint(mask, colour, mix=1.0):
        img[mask] = (1 - mix) * img[mask] + mix * np.asarray(colour)

    def blend(mask, colour, coverage):
        img[mask] = (1 - coverage[mask, None]) * img[mask] + coverage[mask, None] * np.asarray(colour)

    x = 2 * u - 1
    building = cls == W.BUILDING
    blend(building, (0.18, 0.22, 0.28), 0.85 * _stripes(s, 3.0, 0.9, 2.3, fs) * _stripes(t, 3.2, 0.9, 2.4, ft)
          * _band(t, -1e6, size_t - 3.0, ft))
    tiles = 1 - (1 - _stripes(s, 0.8, 0.0, 0.06, fs)) * (1 - _stripes(t, 0.8, 0.0, 0.06, ft))
    blend(cls == W.SIDEWALK, (0.35, 0.33, 0.32), 0.5 * tiles)
    blend(cls == W.FENCE, (0.15, 0.12, 0.1), 0.6 * _stripes(s, 0.3, 0.0, 0.12, fs))
    ground = scene.is_ground[sid] & obj
    img[cls == W.LANE] = style.colour(W.ROAD)
    blend(ground, style.colour(W.LANE), lane_coverage(s, t, fp, scene.content.road_half)
          * float(scene.content.lane_markings))
    vehicle = np.isin(cls, (W.CAR, W.TRUCK, W.BUS, W.VAN))
    paint(vehicle & (v > 0.06) & (v < 0.36) & (np.abs(x) < 0.62), (0.08, 0.10, 0.14), 0.9)
    paint(vehicle & (v > 0.86) & (np.abs(x) > 0.55), (0.03, 0.03, 0.03))
    paint(vehicle & (v > 0.48) & (v < 0.58) & (np.abs(x) > 0.8), (0.85, 0.08, 0.05))
    people = np.isin(cls, (W.PERSON, W.RIDER))
    paint(people & (v < 0.13), (0.80, 0.62, 0.50))
    paint(people & (v > 0.56), (0.12, 0.12, 0.18), 0.7)
    blend(cls == W.TRAIN, (0.15, 0.18, 0.22), _band(t, 0.6, 1.6, ft) * _stripes(s, 2.5, 0.0, 1.7, fs))
    wheels = np.isin(cls, (W.BICYCLE, W.MOTORCYCLE))
    paint(wheels & (np.abs(x ** 2 + (2 * v - 1) ** 2 - 0.6) < 0.25), (0.02, 0.02, 0.02))
    lamp = (cls == W.LIGHT) & (np.abs(x) < 0.55) & (np.abs(np.mod(v * 3, 1) - 0.5) < 0.3)
    lit = (np.floor(v * 3) == np.floor((tone + 1) * 1.49)) & lamp
    paint(lamp, (0.25, 0.25, 0.2))
    paint(lit, (0.2, 1.0, 0.3) if style.name != "bdd" else (1.0, 0.3, 0.1))
    paint((cls == W.SIGN) & (x ** 2 + (2 * v - 1) ** 2 > 0.7) & (geom.surface >= 0), (0.95, 0.95, 0.95), 0.8)
    paint((cls == W.VEGETATION) & (size_t < 4) & (size_s < 0.5), (0.30, 0.22, 0.12), 0.8)  # trunks

    detail = style.detail * (0.6 * tex + 0.4 * fine)
    img *= (1 + np.where(obj, detail, 0))[..., None]

    # Flat shading by orientation: facades on the left, right, and camera-facing surfaces differ.
    normals = scene.normals[sid]
    light = 1 + style.shading * np.where(obj, 0.6 * normals[..., 0] - 0.3 * np.abs(normals[..., 2]), 0)
    img *= light[..., None]

    sky = geom.surface == SKY_ID
    if sky.any():
        d = geom.world_dir[sky]
        elev = np.clip(-d[:, 1] / np.linalg.norm(d, axis=1), 0, 1)
        grad = np.clip(elev * 2.2, 0, 1)[:, None]
        col = (1 - grad) * np.array(style.sky_horizon) + grad * np.array(style.sky_top)
        az = np.arctan2(d[:, 0], d[:, 2])
        cloud = np.clip(_waves(az * 8, elev * 10, scene.sky_seed, 1.0), 0, 1)[:, None]
        img[sky] = col + style.clouds * cloud
    hood = geom.surface == HOOD_ID
    if hood.any():
        img[hood] = style.colour(W.EGO) * (1 + 0.3 * (np.mgrid[0:h, 0:w][0][hood] / h))[:, None]

    img = img * np.array(style.tint) * style.exposure
    if style.headlights:
        yy, xx = np.mgrid[0:h, 0:w]
        glow = np.exp(-(((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - 0.8 * h) / (0.25 * h)) ** 2))
        img = img * (1 + 0.9 * glow[..., None])
    if style.vignette:
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img *= (1 - style.vignette * 0.5 * r2)[..., None]
    img = np.clip(img, 0, 1) ** style.gamma
    if style.blur:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(style.blur * w, 0.3))
    if style.noise:
        img = img + np.random.default_rng(frame_seed).normal(0, style.noise, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
