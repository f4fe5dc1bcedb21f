"""A small store with known contents, written through the public writer API."""

from dataclasses import dataclass

import numpy as np
import pytest

from flowprep.store import StoreSpec, StoreWriter, add_flow, create_store

CLASSES = ["road", "sidewalk", "building", "car"]


@dataclass
class Written:
    path: object
    frames: np.ndarray  # (N, F, H, W, 3)
    labels: np.ndarray  # (N, L, H, W)
    flows: dict  # pair -> (N, H, W, 2) float32
    valid: dict  # pair -> (N, H, W) bool


def sample_data(n=5, h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 3, h, w, 3), dtype=np.uint8)
    frames[1, 0] = 0  # an all-fill chunk must still get its own file
    labels = rng.integers(0, len(CLASSES), (n, 1, h, w), dtype=np.uint8)
    labels[:, :, :3] = 255
    flow = (rng.standard_normal((n, h, w, 2)) * 20).astype(np.float32)
    valid = rng.random((n, h, w)) > 0.2
    return frames, labels, flow, valid


def spec_for(n, h, w, compress=False, flow_codec=None):
    return StoreSpec(dataset="synthetic", split="train", classes=CLASSES, height=h, width=w,
                     sample_ids=[f"seq{i:03d}_{10 * i:05d}" for i in range(n)],
                     frame_offsets=[-2, -1, 0], label_offsets=[0], compress=compress, flow_codec=flow_codec)


def write_store(path, n=5, h=24, w=40, compress=False, samples=None, flow_codec=None):
    frames, labels, flow, valid = sample_data(n, h, w)
    create_store(path, spec_for(n, h, w, compress, flow_codec), provenance={"stage": "test", "command": "pytest"})
    pair = add_flow(path, 0, -1)
    writer = StoreWriter(path)
    for i in range(n) if samples is None else samples:
        if not writer.is_complete(i):  # how every command resumes
            writer.write_sample(i, frames[i], labels[i])
        if not writer.is_complete(i, f"flow_{pair}"):
            writer.write_flow(i, pair, flow[i], valid[i])
    return Written(path, frames, labels, {pair: flow}, {pair: valid})


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "s.zarr")


@pytest.fixture
def compressed_store(tmp_path):
    return write_store(tmp_path / "z.zarr", compress=True)


@pytest.fixture
def blosc_store(tmp_path):
    return write_store(tmp_path / "b.zarr", flow_codec="blosc-lz4")
