"""Sweep runs on this machine (`vdatrain sweep --launcher local`): the visible GPUs split into groups of
`gpus_per_run`, one run per group at a time (CUDA_VISIBLE_DEVICES); without GPUs, one run after the other.
A Ctrl-C (or `kill -TERM`, which the command line turns into one) stops every child (`vdatrain.sweep.stop_all`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from vdatrain.sweep import LOG_FILE, STOPPING, SweepRun, stop_all


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g for g in listed.split(",") if g.strip()] if listed else [str(i) for i in range(torch.cuda.device_count())]
    return ids


def run_local(runs: list[SweepRun], gpus_per_run: int = 1, say=print) -> dict[str, int]:
    """Run every run not yet done: one per group of `gpus_per_run` visible GPUs at a time, or one after the
    other on the CPU. Returns {name: exit status}."""
    gpus = visible_gpus()
    slots = [gpus[i:i + gpus_per_run] for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)] or [None]
    todo = [r for r in runs if not r.done()]
    for r in runs:
        if r.done():
            say(f"{r.name}: done already")
    results: dict[str, int] = {}
    lock = threading.Lock()

    def worker(slot):
        env = {"CUDA_VISIBLE_DEVICES": ",".join(slot)} if slot is not None else None
        while True:
            with lock:
                if not todo:
                    return
                run = todo.pop(0)
            say(f"{run.name}: {run.progress()}" + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if env else ""))
            rc = run(env)
            with lock:
                results[run.name] = rc
            if STOPPING.is_set():
                say(f"{run.name}: interrupted (the next `vdatrain sweep` resumes it)")
                continue
            say(f"{run.name}: " + ("done" if rc == 0 else f"failed (exit {rc}; see {Path(run.run_dir) / LOG_FILE})"))

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in slots]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # Ctrl-C, kill -INT, or kill -TERM (the CLI turns it into this)
        with lock:
            todo.clear()
        stop_all()
        for t in threads:
            t.join()
        raise
    return results
