"""`flowprep flow`: compute the flow pairs of every sample of a store, on CPU workers or GPUs.

Work items are (sample, pair) for complete samples, in a fixed order. `--shard I/N`
keeps items j with j % N == I, so N machines (a SLURM array, any scheduler) split a
store between them; within a machine, batches go to whichever worker process (one
per GPU, or CPU workers for DIS) is free. Each worker writes its items straight
into the store (pairs own their chunk files). Items already complete are skipped,
so an interrupted run continues where it stopped.

Validity written with each flow: target in frame; forward-backward consistent
(the reverse flow is computed too, unless --no-consistency); off the ego vehicle
(rows the dataset's manifest marks).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import shlex
import sys
from dataclasses import dataclass

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.progress import Progress
from flowprep.flow.engines import CPU_ENGINES, make_engine
from flowprep.manifest import DATASETS, load_manifest
from flowprep.store import StoreReader, StoreWriter, add_flow, pair_name
from flowprep.store.layout import flow_part

_PAIR = re.compile(r"(bwd|fwd):(\d+)(?:@(-?\d+))?\Z")


def parse_pairs(spec: str) -> list[tuple[int, int]]:
    """'bwd:1,fwd:2,bwd:1@-1' -> [(0, -1), (0, 2), (-1, -2)]: (source offset, target offset)."""
    pairs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        m = _PAIR.match(part)
        if not m or int(m.group(2)) == 0:
            raise FlowprepError(f"flow pair {part!r}: write bwd:K or fwd:K (K >= 1), optionally @S for the frame it "
                                f"starts from (bwd:1@-1 is t-1 -> t-2)")
        src = int(m.group(3) or 0)
        k = int(m.group(2))
        pairs.append((src, src - k if m.group(1) == "bwd" else src + k))
    return pairs


def default_pairs(offsets: list[int]) -> list[tuple[int, int]]:
    """The reference's pairs: t -> t-k and, for ACCEL, t-k -> t-2k (k = the gap to the nearest past frame)."""
    past = sorted((o for o in offsets if o < 0), reverse=True)
    if not past:
        raise FlowprepError(f"the store has no frame before t (offsets {offsets}); give --pairs")
    k = -past[0]
    return [(0, -k)] + ([(-k, -2 * k)] if -2 * k in offsets else [])


def parse_shard(spec: str, environ=None) -> tuple[int, int]:
    """"I/N", or "auto": the shard the scheduler's environment gives (`shard_from_environment`)."""
    if spec.strip() == "auto":
        return shard_from_environment(os.environ if environ is None else environ)[:2]
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not m or not int(m.group(2)) or int(m.group(1)) >= int(m.group(2)):
        raise FlowprepError(f"--shard {spec!r}: write I/N with 0 <= I < N (e.g. 0/4), or auto")
    return int(m.group(1)), int(m.group(2))


def shard_from_environment(env) -> tuple[int, int, str]:
    """(I, N, where it came from) from the launcher's variables:
    - torchrun (any number of nodes): RANK of WORLD_SIZE;
    - SLURM: the array task (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) and, within
      it, the srun task (SLURM_PROCID of SLURM_NTASKS): shard = task_index * ntasks + procid;
    - none of them: the whole store (0 of 1)."""
    def integer(name):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            return None

    rank, world = integer("RANK"), integer("WORLD_SIZE")
    if rank is not None and world:
        return rank, world, f"torchrun: RANK {rank} of WORLD_SIZE {world}"
    task, count, first = integer("SLURM_ARRAY_TASK_ID"), integer("SLURM_ARRAY_TASK_COUNT"), integer(
        "SLURM_ARRAY_TASK_MIN")
    proc, ntasks = integer("SLURM_PROCID") or 0, integer("SLURM_NTASKS") or 1
    if task is not None and count:
        index = task - (first or 0)
        if not 0 <= index < count:
            raise FlowprepError(f"--shard auto: SLURM array task {task} is not within {first or 0}.."
                                f"{(first or 0) + count - 1} (an array with a step? give --shard I/N)")
        return index * ntasks + proc, count * ntasks, (f"SLURM array task {index} of {count}"
                                                        + (f", srun task {proc} of {ntasks}" if ntasks > 1 else ""))
    if ntasks > 1:
        return proc, ntasks, f"SLURM srun task {proc} of {ntasks}"
    return 0, 1, "no scheduler environment: the whole store"


def work_items(reader: StoreReader, pairs: list[str], shard: tuple[int, int] = (0, 1)) -> list[tuple[int, str]]:
    """(sample, pair) items of this shard, over the samples whose base part is complete."""
    items = [(i, p) for i in np.flatnonzero(reader.complete()).tolist() for p in pairs]
    return [item for j, item in enumerate(items) if j % shard[1] == shard[0]]


@dataclass
class EngineSpec:
    model: str
    ckpt: str | None = None
    random_weights: bool = False
    precision: str = "fp32"
    tile: tuple[int, int] | None = None
    overlap: int = 64
    tile_batch: int = 4  # tiles per forward of a ptlflow model


_worker: dict = {}


def _init(store: str, spec: EngineSpec, devices, consistency: bool, ego_row, engine=None, overlap=None):
    device = devices.get() if devices is not None else "cpu"
    if device == "cpu":
        import cv2

        cv2.setNumThreads(1)  # one process per core does better than threads fighting over two
    if engine is None:
        engine = make_engine(spec.model, ckpt=spec.ckpt, random_weights=spec.random_weights, device=device,
                             precision=spec.precision, tile=spec.tile, overlap=spec.overlap, tile_batch=spec.tile_batch)
    _worker.update(engine=engine,
                   reader=StoreReader(store), writer=StoreWriter(store), consistency=consistency, ego_row=ego_row)
    # On a GPU, fixed-point encoding and the write run on a thread while the engine computes the next batch (the
    # tiles were blended and the validity computed on the GPU); CPU engines already have a process per core.
    if overlap if overlap is not None else device != "cpu":
        from concurrent.futures import ThreadPoolExecutor
        from multiprocessing.util import Finalize

        _worker["writes"] = ThreadPoolExecutor(1, thread_name_prefix="flow-writer")
        Finalize(None, _drain, exitpriority=10)  # a pool worker finishes its last write before it exits


def _write(batch: list[tuple[int, str]], forward, valid) -> None:
    for (i, p), fw, ok in zip(batch, forward, valid):
        _worker["writer"].write_flow(i, p, fw, ok)


def _drain() -> None:
    """Wait for the write in flight; its error, if any, is raised here."""
    pending = _worker.pop("pending", None)
    if pending is not None:
        pending.result()


def _process(batch: list[tuple[int, str]]) -> int:
    reader, engine = _worker["reader"], _worker["engine"]
    flows_meta = reader.flow_pairs
    first = np.stack([reader.frame(i, flows_meta[p]["from_offset"]) for i, p in batch])
    second = np.stack([reader.frame(i, flows_meta[p]["to_offset"]) for i, p in batch])
    forward, valid = engine.flow_and_validity(first, second, _worker["consistency"], _worker["ego_row"])
    if "writes" not in _worker:
        _write(batch, forward, valid)
        return len(batch)
    _drain()  # at most one batch waits to be written: bounded memory, and a failed write stops the worker
    _worker["pending"] = _worker["writes"].submit(_write, batch, forward, valid)
    return len(batch)


def _ego_row(dataset: str) -> float | None:
    """The manifest's ego-vehicle row for a store's dataset (BDDVid uses BDD's; stores of no dataset: none)."""
    name = {"bddvid": "bdd"}.get(dataset, dataset)
    return load_manifest(name).ego_row if name in DATASETS else None


def run_flow(store: str, spec: EngineSpec, pairs: list[tuple[int, int]] | None = None, *, shard=(0, 1), gpus: int = 0,
             workers: int = 1, batch: int = 1, consistency: bool = True, progress: bool = True,
             codec: str | None = None, overlap: bool | None = None) -> dict:
    """Compute `pairs` for this shard's incomplete samples. `overlap`: write each batch on a thread while the
    engine computes the next (default: on GPUs only)."""
    reader = StoreReader(store)
    pairs = pairs or default_pairs(reader.frame_offsets)
    ego_row = _ego_row(reader.attrs["dataset"])
    if gpus:
        import torch

        available = torch.cuda.device_count()
        if gpus > available:
            raise FlowprepError(f"--gpus {gpus}: only {available} CUDA device(s) visible")
    elif spec.model not in CPU_ENGINES and spec.precision == "fp16":
        raise FlowprepError("fp16 needs a GPU; use bf16 or fp32 on the CPU")
    checked = None
    if spec.model not in CPU_ENGINES:  # fail on weights before any work; reused when running in-process on the CPU
        checked = make_engine(spec.model, ckpt=spec.ckpt, random_weights=spec.random_weights, device="cpu",
                              precision="fp32" if spec.precision == "fp16" else spec.precision, tile=spec.tile,
                              overlap=spec.overlap, tile_batch=spec.tile_batch)
    names = [add_flow(store, a, b, provenance={"stage": f"flow {pair_name(a, b)}", "command": shlex.join(sys.argv),
                                               "engine": spec.model, "weights": "random" if spec.random_weights else spec.ckpt,
                                               "precision": spec.precision, "consistency": consistency},
                          codec=codec)
             for a, b in pairs]
    reader = StoreReader(store)
    writer = StoreWriter(store)
    items = [(i, p) for i, p in work_items(reader, names, shard) if not writer.is_complete(i, flow_part(p))]
    batches = [items[k:k + batch] for k in range(0, len(items), batch)]
    n_proc = gpus or workers
    bar = Progress(len(items), f"flow {spec.model}", "pair", enabled=progress)
    if n_proc > 1 and len(batches) > 1:
        ctx = mp.get_context("spawn")
        devices = ctx.Queue()
        for d in range(n_proc):
            devices.put(f"cuda:{d}" if gpus else "cpu")
        with ctx.Pool(n_proc, initializer=_init, initargs=(store, spec, devices, consistency, ego_row, None,
                                                           overlap)) as pool:
            for done in pool.imap_unordered(_process, batches):
                bar.update(done)
            pool.close()
            pool.join()  # workers exit after their last write (leaving the block would kill them)
    elif batches:
        queue = None
        if gpus:  # a torchrun process takes its own GPU
            queue = mp.get_context("spawn").Queue()
            queue.put(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
        _init(store, spec, queue, consistency, ego_row, engine=None if gpus else checked, overlap=overlap)
        for b in batches:
            bar.update(_process(b))
        _drain()
    bar.close()
    # every item is checked in the store, not taken on the workers' word (a write on a worker's thread that
    # failed as it exited is reported here, and a rerun resumes it)
    done = StoreReader(store)
    missing = [f"{done.sample_ids[i]} {p}" for i, p in items if not done.complete(flow_part(p))[i]]
    if missing:
        raise FlowprepError(f"{store}: {len(missing)} flows were not written (e.g. {', '.join(missing[:3])}); "
                            f"run the same command again to compute them")
    return {"pairs": names, "items": len(items), "shard": list(shard)}
