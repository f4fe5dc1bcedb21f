"""A procedural driving world made of planar surfaces, so that motion between frames is exact.

Coordinates: world X right, Y down, Z forward, metres; the ground is the plane
Y = 0 and the camera rides at Y = -1.5 m. Every object is a flat surface
(ground, facades, fences, and upright billboards for cars, people, poles,
trees) translating rigidly at constant velocity; the sky lies at infinity.
A pixel therefore maps to a surface point (surface, s, t) whose position at any
other time is known in closed form, and projecting it gives the exact flow.

World class codes are Cityscapes trainIds 0..18 plus VAN, LANE (lane marking)
and EGO (the ego vehicle's hood); each dataset layout maps them to its own
raw label encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR,
 TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
VAN, LANE, EGO = 19, 20, 21
N_WORLD_CLASSES = 22

CAMERA_HEIGHT = 1.5


@dataclass
class Surface:
    """A planar patch: points origin(time) + s * axis_s + t * axis_t for (s, t) inside `shape`.

    axis_t points down for upright surfaces, so t grows from the top edge.
    """

    cls: int
    origin: np.ndarray  # (3,) metres at time 0
    axis_s: np.ndarray  # (3,) unit
    axis_t: np.ndarray  # (3,) unit
    size: tuple[float, float]  # extent along s and t, metres
    shape: str = "rect"  # rect | ellipse | car | person | disc | triangle | ground
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # m/s
    tone: float = 0.0  # per-instance appearance variation in [-1, 1]
    colour: tuple[float, float, float] | None = None  # overrides the class colour (cars, clothes)
    instance: int = 0

    def __post_init__(self):
        self.normal = np.cross(self.axis_s, self.axis_t)

    def origin_at(self, time: float) -> np.ndarray:
        return self.origin + self.velocity * time


@dataclass
class Camera:
    """Pinhole camera moving forward with a gentle yaw and sway. Intrinsics in pixels."""

    width: int
    height: int
    focal: float
    cx: float
    cy: float
    speed: float  # m/s along Z
    yaw_amp: float = 0.03  # radians
    yaw_period: float = 9.0  # seconds
    sway_amp: float = 0.3  # metres
    phase: float = 0.0
    hood_top: float | None = None  # fraction of the height where the hood starts at the centre column

    def pose(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(R, C): world-from-camera rotation (3, 3) and camera centre (3,) in metres."""
        yaw = self.yaw_amp * np.sin(2 * np.pi * time / self.yaw_period + self.phase)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        centre = np.array([self.sway_amp * np.sin(2 * np.pi * time / (1.7 * self.yaw_period) + self.phase),
                           -CAMERA_HEIGHT, self.speed * time])
        return rot, centre

    def rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame ray directions with z = 1 for pixel centres."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        return np.stack([(u - self.cx) / self.focal, (v - self.cy) / self.focal, np.ones_like(u)], -1)

    def project(self, points: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) -> pixel coordinates (..., 2) (x, y) and camera depth (...)."""
        rot, centre = self.pose(time)
        pc = (points - centre) @ rot  # = R^T (P - C), row vectors
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.stack([self.focal * pc[..., 0] / z + self.cx, self.focal * pc[..., 1] / z + self.cy], -1)
        return xy, z

    def project_direction(self, dirs: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray]:
        """Directions at infinity (sky) -> pixels, and their camera-frame z (> 0 when in front)."""
        rot, _ = self.pose(time)
        dc = dirs @ rot
        z = dc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.stack([self.focal * dc[..., 0] / z + self.cx, self.focal * dc[..., 1] / z + self.cy], -1)
        return xy, z

    def hood_mask(self) -> np.ndarray:
        """(H, W) bool: the ego vehicle's hood, rigid with the camera (its flow is zero)."""
        if self.hood_top is None:
            return np.zeros((self.height, self.width), bool)
        v, u = np.mgrid[0:self.height, 0:self.width]
        x = (u + 0.5 - self.width / 2) / (self.width / 2)
        top = self.height * (self.hood_top + (1 - self.hood_top) * 0.45 * x ** 2)
        return v + 0.5 >= top


@dataclass
class Content:
    """How a domain fills its streets: densities and probabilities (class frequencies differ by domain)."""

    road_half: float = 5.0
    sidewalk: float = 3.0
    terrain: float = 2.0  # strip between sidewalk and buildings (0: none)
    building_prob: float = 0.8
    tree_every: float = 12.0
    pole_every: float = 18.0
    light_prob: float = 0.3
    sign_prob: float = 0.4
    fence_prob: float = 0.3
    wall_prob: float = 0.0
    cars_per_100m: float = 8.0
    truck_prob: float = 0.1
    bus_prob: float = 0.06
    van_prob: float = 0.0
    train_prob: float = 0.0
    people_per_100m: float = 6.0
    crossing_prob: float = 0.3
    riders_per_100m: float = 1.5
    motorcycle_prob: float = 0.3
    lane_markings: bool = True
    car_colours: tuple = ((0.55, 0.1, 0.1), (0.1, 0.2, 0.5), (0.8, 0.8, 0.8), (0.15, 0.15, 0.15), (0.6, 0.6, 0.65))


@dataclass
class Scene:
    surfaces: list[Surface]
    content: Content
    sky_seed: float

    def __post_init__(self):
        """Per-surface tables, indexed by surface id, for vectorised lookups in rendering and shading."""
        sf = self.surfaces
        self.cls = np.array([x.cls for x in sf], dtype=np.uint8)
        self.instance = np.array([x.instance for x in sf], dtype=np.int32)
        self.is_ground = np.array([x.shape == "ground" for x in sf])
        self.tone = np.array([x.tone for x in sf])
        self.size = np.array([[min(x.size[0], 1e6), min(x.size[1], 1e6)] for x in sf])
        self.normals = np.array([x.normal for x in sf])
        self.axes_s = np.array([x.axis_s for x in sf])
        self.axes_t = np.array([x.axis_t for x in sf])
        self.has_colour = np.array([x.colour is not None for x in sf])
        self.colours = np.array([x.colour if x.colour is not None else (0.0, 0.0, 0.0) for x in sf])
        self.origins0 = np.array([x.origin for x in sf])
        self.velocities = np.array([x.velocity for x in sf])

    def origins_at(self, time: float) -> np.ndarray:
        """(n_surfaces, 3) origins at `time`."""
        return self.origins0 + self.velocities * time


X_AXIS = np.array([1.0, 0.0, 0.0])
DOWN = np.array([0.0, 1.0, 0.0])
Z_AXIS = np.array([0.0, 0.0, 1.0])


def _billboard(cls, x, z, width, height, *, lift=0.0, shape="rect", velocity=(0, 0, 0), **kw) -> Surface:
    """Upright surface facing the camera, bottom centre at (x, -lift, z)."""
    origin = np.array([x - width / 2, -lift - height, z], dtype=float)
    return Surface(cls, origin, X_AXIS, DOWN, (width, height), shape, np.array(velocity, dtype=float), **kw)


def _side(cls, x, z0, length, height, *, lift=0.0, velocity=(0, 0, 0), **kw) -> Surface:
    """Upright surface parallel to the road (a facade, fence, train side) from z0 to z0 + length."""
    origin = np.array([x, -lift - height, z0], dtype=float)
    return Surface(cls, origin, Z_AXIS, DOWN, (length, height), "rect", np.array(velocity, dtype=float), **kw)


def build_scene(rng: np.random.Generator, content: Content, z_end: float, duration: float) -> Scene:
    """Populate a straight street from z = -20 m to `z_end` with static and moving objects.

    Moving objects are placed so that some enter and leave the view during `duration` seconds.
    """
    c = content
    s: list[Surface] = []
    inst = iter(range(1, 1 << 30))
    edge = c.road_half + c.sidewalk  # outer sidewalk edge
    front = edge + c.terrain  # building line

    # Ground: one infinite plane; its class is a function of X (road / sidewalk / terrain).
    s.append(Surface(ROAD, np.array([0.0, 0.0, 0.0]), X_AXIS, Z_AXIS, (np.inf, np.inf), "ground"))

    for side in (-1, 1):
        z = -20.0
        while z < z_end:  # buildings with gaps filled by fences, walls or nothing
            length = rng.uniform(8, 25)
            if rng.random() < c.building_prob:
                x = side * (front + rng.uniform(0, 2))
                s.append(_side(BUILDING, x, z, length, rng.uniform(6, 22), tone=rng.uniform(-1, 1), instance=next(inst)))
            elif rng.random() < c.wall_prob:
                s.append(_side(WALL, side * front, z, length, rng.uniform(1.0, 2.2), tone=rng.uniform(-1, 1)))
            elif rng.random() < c.fence_prob:
                s.append(_side(FENCE, side * front, z, length, rng.uniform(1.0, 1.8), tone=rng.uniform(-1, 1)))
            z += length + (rng.uniform(2, 10) if rng.random() < 0.4 else 0.0)
        z = rng.uniform(-10, 10)
        while z < z_end:  # trees on the terrain strip or sidewalk edge
            x = side * (edge + max(c.terrain, 1.0) * rng.uniform(0.3, 0.7))
            height = rng.uniform(4, 8)
            s.append(_billboard(VEGETATION, x, z, 0.35, height * 0.45, tone=rng.uniform(-1, 1)))
            s.append(_billboard(VEGETATION, x, z - 0.05, rng.uniform(2.5, 4.5), height * 0.65, lift=height * 0.35,
                                shape="ellipse", tone=rng.uniform(-1, 1)))
            z += c.tree_every * rng.uniform(0.5, 1.5)
        z = rng.uniform(-10, 10)
        while z < z_end:  # poles, some carrying a traffic light or a sign
            x = side * (c.road_half + 0.4)
            height = rng.uniform(4, 6)
            s.append(_billboard(POLE, x, z, 0.18, height, tone=rng.uniform(-1, 1)))
            r = rng.random()
            if r < c.light_prob:
                s.append(_billboard(LIGHT, x - side * 0.1, z - 0.1, 0.4, 1.0, lift=height - 1.0, tone=rng.uniform(-1, 1)))
            elif r < c.light_prob + c.sign_prob:
                shape = ("disc", "rect", "triangle")[rng.integers(3)]
                s.append(_billboard(SIGN, x - side * 0.1, z - 0.1, 0.75, 0.75, lift=height - 1.6, shape=shape,
                                    tone=rng.uniform(-1, 1)))
            z += c.pole_every * rng.uniform(0.6, 1.4)

    # Vehicles: same-direction lanes (x > 0 ahead of us and ours), oncoming lane (x < 0), parked.
    span = z_end + 20
    for _ in range(rng.poisson(c.cars_per_100m * span / 100)):
        r = rng.random()
        if r < c.bus_prob:
            cls, w, h = BUS, 2.6, 3.2
        elif r < c.bus_prob + c.truck_prob:
            cls, w, h = TRUCK, 2.5, 3.4
        elif r < c.bus_prob + c.truck_prob + c.van_prob:
            cls, w, h = VAN, 2.0, 2.2
        else:
            cls, w, h = CAR, 1.8, 1.45
        lane = rng.choice(["ours", "next", "oncoming", "parked"], p=[0.3, 0.25, 0.25, 0.2])
        z = rng.uniform(-15, z_end)
        if lane == "ours":
            x, v = rng.uniform(-0.4, 0.4) + c.road_half * 0.3, rng.uniform(-4, 4)
        elif lane == "next":
            x, v = c.road_half * 0.75, rng.uniform(-6, 6)
        elif lane == "oncoming":
            x, v = -c.road_half * 0.6, -rng.uniform(8, 14)
        else:
            x, v = np.sign(rng.standard_normal()) * (c.road_half - 0.9), 0.0
        colour = tuple(np.clip(np.array(c.car_colours[rng.integers(len(c.car_colours))]) + rng.normal(0, 0.05, 3), 0, 1))
        s.append(_billboard(cls, x, z, w, h, shape="car", velocity=(0, 0, v), colour=colour, instance=next(inst),
                            tone=rng.uniform(-1, 1)))
    if rng.random() < c.train_prob:  # a tram running beside the street
        x = -(c.road_half + 0.2) if rng.random() < 0.5 else c.road_half - 2.0
        s.append(_side(TRAIN, x, rng.uniform(0, z_end * 0.5), rng.uniform(25, 40), 3.4, lift=0.3,
                       velocity=(0, 0, rng.uniform(-8, 8)), instance=next(inst), tone=rng.uniform(-1, 1)))

    # People on the sidewalks, some crossing the road.
    for _ in range(rng.poisson(c.people_per_100m * span / 100)):
        side = np.sign(rng.standard_normal())
        z = rng.uniform(-5, z_end)
        colour = tuple(rng.uniform(0.05, 0.9, 3))
        if rng.random() < c.crossing_prob:
            x, vel = side * (c.road_half + 1.0), (-side * rng.uniform(1.0, 1.8), 0, 0)
        else:
            x, vel = side * (c.road_half + c.sidewalk * rng.uniform(0.2, 0.8)), (0, 0, rng.uniform(-1.6, 1.6))
        s.append(_billboard(PERSON, x, z, 0.6, rng.uniform(1.55, 1.9), shape="person", velocity=vel, colour=colour,
                            instance=next(inst), tone=rng.uniform(-1, 1)))
    # Riders on bicycles or motorcycles near the kerb.
    for _ in range(rng.poisson(c.riders_per_100m * span / 100)):
        z = rng.uniform(-5, z_end)
        x = (c.road_half - 1.2) * np.sign(rng.standard_normal())
        moto = rng.random() < c.motorcycle_prob
        v = rng.uniform(-3, 6) if moto else rng.uniform(-6, -1)
        i = next(inst)
        s.append(_billboard(MOTORCYCLE if moto else BICYCLE, x, z, 0.7, 1.1, velocity=(0, 0, v), shape="ellipse",
                            instance=i, tone=rng.uniform(-1, 1)))
        s.append(_billboard(RIDER, x, z - 0.05, 0.55, 0.95, lift=0.75, shape="person", velocity=(0, 0, v),
                            colour=tuple(rng.uniform(0.05, 0.9, 3)), instance=i, tone=rng.uniform(-1, 1)))
    return Scene(s, content, float(rng.uniform(0, 100)))
