"""Flow engines behind one interface, selected by name.

An engine is called with two batches of frames, (B, H, W, 3) uint8 RGB, and
returns (B, H, W, 2) float32 flow in pixels from the first frame to the second,
(u, v) = (x, y). Heavy imports (torch, ptlflow) happen inside the engines.
"""

from __future__ import annotations

from flowprep.errors import FlowprepError

CPU_ENGINES = ("dis", "dis-fast", "dis-ultrafast")


def make_engine(model: str, *, ckpt: str | None = None, random_weights: bool = False, device: str = "cpu",
                precision: str = "fp32", tile: tuple[int, int] | None = None, overlap: int = 64, tile_batch: int = 4):
    """Build an engine by name: 'dis', 'dis-fast', 'dis-ultrafast' (OpenCV, CPU), or any ptlflow model
    ('flowformer', 'flowformer++' = ptlflow's 'flowformerplusplus', 'raft', ...)."""
    if model in CPU_ENGINES:
        from flowprep.flow.engines.dis import DisEngine

        if ckpt or random_weights:
            raise FlowprepError(f"{model} has no weights: drop --ckpt / --random-weights")
        return DisEngine(model.split("-", 1)[1] if "-" in model else "medium")
    from flowprep.flow.engines.ptlflow_models import PtlflowEngine

    return PtlflowEngine(model, ckpt=ckpt, random_weights=random_weights, device=device, precision=precision,
                         tile=tile, overlap=overlap, batch=tile_batch)
