"""Engines behind one interface: DIS on CPU, and FlowFormer through ptlflow with our tiled, batched path."""

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow.engines import make_engine


def _pair(h=64, w=128, shift=3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h + 20, w + 20, 3), dtype=np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 2)
    return base[10:10 + h, 10:10 + w], base[10:10 + h, 10 + shift:10 + shift + w]


def test_dis_recovers_a_global_shift():
    a, b = _pair(shift=3)
    flow = make_engine("dis")(a[None], b[None])
    assert flow.shape == (1, 64, 128, 2) and flow.dtype == np.float32
    # frame b is frame a moved 3 px left: pixel p of a is at p - 3 in b
    assert np.median(flow[0, 10:-10, 10:-10, 0]) == pytest.approx(-3, abs=0.3)


def test_flowformer_with_random_weights_runs_the_tiled_batched_path_on_cpu():
    """Tiles of both pairs 3 per forward (`--tile-batch 3`) give the flows of one tile per forward, blended on the
    engine's device; validity computed there agrees with the numpy path's."""
    from flowprep.flow.validity import validity

    import torch

    torch.manual_seed(0)  # random weights: untrained attention magnifies rounding, so fix them
    engine = make_engine("flowformer", random_weights=True, tile=(48, 64), overlap=16, tile_batch=3)
    a, b = _pair(h=64, w=112)
    flow = engine(np.stack([a, b]), np.stack([b, a]))
    assert flow.shape == (2, 64, 112, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert engine.weights == "random"
    engine.batch = 1
    # equal up to the float rounding of another batch size (an untrained model magnifies it), well below the
    # store's 1/32 px step
    np.testing.assert_allclose(engine(np.stack([a, b]), np.stack([b, a])), flow, atol=1e-2)
    forward, valid = engine.flow_and_validity(a[None], b[None], consistency=True, ego_row=0.9)
    expected = validity(forward[0], flow[1], 0.9)
    assert valid.shape == (1, 64, 112) and (valid[0] == expected).mean() > 0.999


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(FlowprepError, match="fp16 needs a GPU"):
        make_engine("flowformer", random_weights=True, precision="fp16")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(FlowprepError, match="unknown flow model 'flowfarmer'"):
        make_engine("flowfarmer", random_weights=True)


def test_dis_has_no_weights():
    with pytest.raises(FlowprepError, match="has no weights"):
        make_engine("dis", ckpt="x.ckpt")


def test_a_tile_smaller_than_its_overlap_is_a_clear_error():
    with pytest.raises(FlowprepError, match="tiles need at least 16 px and more than the overlap"):
        make_engine("flowformer", random_weights=True, tile=(48, 64), overlap=64)


def test_the_flow_benchmark_gpu_code_path_runs_on_the_cpu():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "bench/flow.py", "--smoke"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| ours, bf16, batch 2 pairs |" in out.stdout and "nan" not in out.stdout.split("plain ptlflow loop")[1]
