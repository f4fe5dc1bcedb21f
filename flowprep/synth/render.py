"""Ray-cast the planar world: per-pixel visible surface, its (s, t) coordinates, class; exact flow.

`render_geometry` answers, for every pixel centre, which surface is seen and
where on it. `exact_flow` moves that surface point to another time and projects
it: the flow is exact by construction (no rendering approximation), and a pixel
is non-occluded when the surface seen at its target in the other frame is the
same surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowprep.synth.world import EGO, LANE, ROAD, SIDEWALK, SKY, TERRAIN, Camera, Scene

SKY_ID, HOOD_ID = -1, -2
NEAR, FAR = 0.3, 400.0


@dataclass
class Geometry:
    """What one frame sees. All arrays (H, W)."""

    time: float  # seconds
    surface: np.ndarray  # int32 index into scene.surfaces; -1 sky, -2 ego hood
    s: np.ndarray  # float64 metres along axis_s of that surface
    t: np.ndarray  # float64 metres along axis_t
    depth: np.ndarray  # float64 camera z, metres (inf for sky, 0 for hood)
    world_dir: np.ndarray  # (H, W, 3) float64 world ray directions (sky texture, sky flow)
    cls: np.ndarray  # uint8 world class
    instance: np.ndarray  # int32 instance id (0 = stuff)
    footprint: np.ndarray  # (H, W, 2) metres of (s, t) one pixel spans: textures are filtered over it


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape masks in normalised surface coordinates u, v in [0, 1] (v = 0 at the top edge)."""
    box = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    x = 2 * u - 1
    if shape == "rect":
        return box
    if shape in ("ellipse", "disc"):
        return x ** 2 + (2 * v - 1) ** 2 <= 1
    if shape == "triangle":
        return box & (np.abs(x) <= v)
    if shape == "car":  # cabin narrower than the body
        return box & ((v >= 0.4) | (np.abs(x) <= 0.75))
    if shape == "person":
        head = (x / 0.36) ** 2 + ((v - 0.065) / 0.065) ** 2 <= 1
        torso = (v >= 0.13) & (v <= 0.56) & (np.abs(x) <= 0.9)
        legs = (v > 0.56) & (v <= 1) & (np.abs(x) <= 0.6) & (np.abs(x) >= 0.08)
        return head | torso | legs
    raise ValueError(f"unknown shape {shape!r}")


def ground_class(scene: Scene, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Class of ground points at world (x, z): road with lane markings, sidewalk, terrain."""
    c = scene.content
    ax = np.abs(x)
    beyond = SIDEWALK if c.terrain == 0 else TERRAIN  # no terrain strip: sidewalk up to the buildings
    cls = np.where(ax < c.road_half, ROAD, np.where(ax < c.road_half + c.sidewalk, SIDEWALK, beyond))
    if c.lane_markings:
        dashed = (np.abs(x) < 0.08) & (np.mod(z, 9.0) < 4.0)
        edges = np.abs(ax - (c.road_half - 0.35)) < 0.07
        cls = np.where(dashed | edges, LANE, cls)
    return cls.astype(np.uint8)


class Renderer:
    """Renders geometry for one camera; caches the camera's ray grid."""

    def __init__(self, scene: Scene, camera: Camera):
        self.scene, self.camera = scene, camera
        self.rays = camera.rays()
        self.hood = camera.hood_mask()

    def _screen_boxes(self, time: float) -> list[tuple[int, int, int, int] | None]:
        """Per surface, the pixel box that can see it, or None when it is out of view.

        All corners are projected in one call: per-surface numpy calls dominate the cost otherwise.
        """
        cam, surfaces = self.camera, self.scene.surfaces
        h, w = cam.height, cam.width
        scene = self.scene
        finite = np.flatnonzero(~scene.is_ground)
        boxes: list = [(0, h, 0, w)] * len(surfaces)
        if not finite.size:
            return boxes
        origin = scene.origins_at(time)[finite]
        a = scene.axes_s[finite] * scene.size[finite, :1]
        b = scene.axes_t[finite] * scene.size[finite, 1:]
        corners = np.stack([origin, origin + a, origin + b, origin + a + b], 1)  # (n, 4, 3)
        xy, z = cam.project(corners, time)
        behind_or_far = (z <= NEAR).all(1) | (z > FAR).all(1)
        in_front = (z > NEAR).all(1)  # fully in front: only pixel centres (integers) in its box can see it
        with np.errstate(invalid="ignore"):
            x0 = np.clip(np.ceil(xy[..., 0].min(1)), 0, w)
            x1 = np.clip(np.floor(xy[..., 0].max(1)) + 1, 0, w)
            y0 = np.clip(np.ceil(xy[..., 1].min(1)), 0, h)
            y1 = np.clip(np.floor(xy[..., 1].max(1)) + 1, 0, h)
        empty = in_front & ((x0 >= x1) | (y0 >= y1))
        for k, i in enumerate(finite):
            if behind_or_far[k] or empty[k]:
                boxes[i] = None
            elif in_front[k]:
                boxes[i] = (int(y0[k]), int(y1[k]), int(x0[k]), int(x1[k]))
        return boxes

    def geometry(self, time: float) -> Geometry:
        cam, scene = self.camera, self.scene
        h, w = cam.height, cam.width
        rot, centre = cam.pose(time)
        dirs = self.rays @ rot.T  # world direction of each pixel ray, with camera z = 1
        depth = np.full((h, w), np.inf)
        surface = np.full((h, w), SKY_ID, dtype=np.int32)
        s_map, t_map = np.zeros((h, w)), np.zeros((h, w))
        footprint = np.full((h, w, 2), np.inf)
        step_u, step_v = rot[:, 0] / cam.focal, rot[:, 1] / cam.focal  # world ray change per pixel step
        boxes = self._screen_boxes(time)
        for idx, surf in enumerate(scene.surfaces):
            if boxes[idx] is None:
                continue
            y0, y1, x0, x1 = boxes[idx]
            origin = surf.origin_at(time)
            d = dirs[y0:y1, x0:x1]
            n = surf.normal
            with np.errstate(divide="ignore", invalid="ignore"):
                lam = ((origin - centre) @ n) / (d @ n)
            rel = centre + lam[..., None] * d - origin
            s, t = rel @ surf.axis_s, rel @ surf.axis_t
            if surf.shape == "ground":
                hit = np.isfinite(lam) & (lam > NEAR) & (lam < FAR)
            else:
                hit = _inside(surf.shape, s / surf.size[0], t / surf.size[1]) & (lam > NEAR)
            hit &= lam < depth[y0:y1, x0:x1]
            depth[y0:y1, x0:x1][hit] = lam[hit]
            surface[y0:y1, x0:x1][hit] = idx
            s_map[y0:y1, x0:x1][hit] = s[hit]
            t_map[y0:y1, x0:x1][hit] = t[hit]
            # d(point)/d(pixel) of a ray-plane intersection: lam * (step - d (n.step) / (n.d)).
            dh, nd, lh = d[hit], (d @ n)[hit][:, None], lam[hit][:, None]
            dpu = lh * (step_u - dh * (step_u @ n) / nd)
            dpv = lh * (step_v - dh * (step_v @ n) / nd)
            footprint[y0:y1, x0:x1][hit] = np.stack([
                np.maximum(np.abs(dpu @ surf.axis_s), np.abs(dpv @ surf.axis_s)),
                np.maximum(np.abs(dpu @ surf.axis_t), np.abs(dpv @ surf.axis_t))], -1)
        surface[self.hood] = HOOD_ID
        depth[self.hood] = 0.0

        cls = np.full((h, w), SKY, dtype=np.uint8)
        instance = np.zeros((h, w), dtype=np.int32)
        obj = surface >= 0
        cls[obj], instance[obj] = scene.cls[surface[obj]], scene.instance[surface[obj]]
        ground = scene.is_ground[np.maximum(surface, 0)] & obj
        cls[ground] = ground_class(scene, s_map[ground], t_map[ground])
        cls[self.hood] = EGO
        return Geometry(time, surface, s_map, t_map, depth, dirs, cls, instance, footprint)

    def exact_flow(self, a: Geometry, b: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Flow from frame `a` to frame `b`: (H, W, 2) float32 pixels (u = x, v = y), and (H, W) bool
        non-occluded mask (the point stays in frame, in front, and is the surface seen there in `b`)."""
        cam, scene = self.camera, self.scene
        h, w = a.surface.shape
        target = np.zeros((h, w, 2))
        front = np.ones((h, w), bool)
        obj = a.surface >= 0
        if obj.any():
            idx = a.surface[obj]
            points = (scene.origins_at(b.time)[idx] + a.s[obj][:, None] * scene.axes_s[idx]
                      + a.t[obj][:, None] * scene.axes_t[idx])
            xy, z = cam.project(points, b.time)
            target[obj], front[obj] = xy, z > NEAR
        sky = a.surface == SKY_ID
        if sky.any():
            xy, z = cam.project_direction(a.world_dir[sky], b.time)
            target[sky], front[sky] = xy, z > 0
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        pixels = np.stack([u, v], -1)
        hood = a.surface == HOOD_ID
        target[hood] = pixels[hood]  # rigid with the camera
        flow = (target - pixels).astype(np.float32)
        qx, qy = np.rint(target[..., 0]), np.rint(target[..., 1])
        inside = front & (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
        seen = np.full((h, w), -99, dtype=np.int32)
        seen[inside] = b.surface[qy[inside].astype(int), qx[inside].astype(int)]
        return flow, inside & (seen == a.surface)
