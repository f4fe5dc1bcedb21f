"""Run an ingest plan into a store: process pool, progress bar, resume, report.

A plan is a list of samples (each knows how to load itself) plus the samples
excluded while planning, with reasons. The store is created for the planned
samples; workers write disjoint samples straight into it; complete samples are
skipped on a re-run; a sample whose files turn out unreadable stays incomplete
and is reported, never substituted. The report (every exclusion and failure
with its reason) is saved in the store's attributes under "ingest".
"""

from __future__ import annotations

import multiprocessing as mp
import shlex
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from flowprep.errors import FlowprepError
from flowprep.progress import Progress
from flowprep.store import StoreSpec, StoreWriter, create_store
from flowprep.store.writer import update_attrs


@dataclass
class Loaded:
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    labels: np.ndarray  # (L, H, W) uint8 trainIds
    extras: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # reported per sample (e.g. BDDVid's match), kept in the store


@dataclass
class Plan:
    spec: StoreSpec | None  # None when planning found nothing usable
    # picklable; loads planned sample i or raises FlowprepError. Optional `describe(i, reader) -> dict`:
    # the report of a complete sample rebuilt from the store (kept when a run is killed before saving it)
    load: Callable[[int], Loaded] | None
    excluded: list[tuple[str, str, str]] = field(default_factory=list)  # (sample id, kind, detail) from planning
    sources: dict = field(default_factory=dict)  # provenance: what was read


@dataclass
class Result:
    store: str
    planned: int
    written: int  # in this run
    complete: int
    problems: list[tuple[str, str, str]]  # excluded + failed: (sample id, kind, detail)


_worker: dict = {}


def _init(store: str, load):
    _worker["writer"] = StoreWriter(store)
    _worker["load"] = load


def _process(index: int) -> tuple[int, tuple[str, str] | None, dict]:
    """Load and write one sample: (index, None or (kind, detail) of the failure, info)."""
    writer = _worker["writer"]
    try:
        sample = _worker["load"](index)
        writer.write_sample(index, sample.frames, sample.labels, sample.extras or None)
    except FlowprepError as e:
        return index, (getattr(e, "kind", "unreadable input"), getattr(e, "detail", str(e))), {}
    return index, None, sample.info


def run_plan(plan: Plan, out: str, *, stage: str, workers: int = 1, progress: bool = True) -> Result:
    if plan.spec is None:
        reasons = Counter(kind for _, kind, _ in plan.excluded)
        raise FlowprepError(f"nothing to ingest: no usable sample found ({dict(reasons) or 'no labelled files matched'})")
    created = not (Path(out) / "zarr.json").exists()
    create_store(out, plan.spec, provenance={"stage": stage, "command": shlex.join(sys.argv), "sources": plan.sources})
    writer = StoreWriter(out)
    todo = [i for i in range(len(plan.spec.sample_ids)) if not writer.is_complete(i)]
    failed: list[tuple[str, str, str]] = []
    infos: dict[str, dict] = dict(writer.attrs.get("ingest", {}).get("samples", {}))  # from earlier runs
    bar = Progress(len(todo), f"{stage} {plan.spec.dataset}/{plan.spec.split}", "sample", enabled=progress)

    def collect(index, failure, info):
        sid = plan.spec.sample_ids[index]
        if failure:
            failed.append((sid, *failure))
        elif info:
            infos[sid] = info
        bar.update()

    if workers > 1 and len(todo) > 1:
        with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(str(out), plan.load)) as pool:
            for result in pool.imap_unordered(_process, todo):
                collect(*result)
    else:
        _init(str(out), plan.load)
        for index in todo:
            collect(*_process(index))
    bar.close()
    complete = sum(writer.is_complete(i) for i in range(len(plan.spec.sample_ids)))
    if complete == 0 and created:  # nothing usable: leave nothing behind (the caller reports why)
        shutil.rmtree(out, ignore_errors=True)
        return Result(str(out), len(plan.spec.sample_ids), 0, 0, sorted(plan.excluded) + sorted(failed))
    describe = getattr(plan.load, "describe", None)  # a sample's report rebuilt from the store: a run killed
    if describe is not None:  # before it saved its reports loses none of them
        from flowprep.store import StoreReader

        reader = StoreReader(out)
        for i in np.flatnonzero(reader.complete()):
            infos.setdefault(plan.spec.sample_ids[i], describe(int(i), reader))
    problems = sorted(plan.excluded) + sorted(failed)
    report = {"planned": len(plan.spec.sample_ids), "complete": complete,
              "excluded": [{"sample": s, "reason": k, "detail": d} for s, k, d in problems]}
    if infos:
        report["samples"] = dict(sorted(infos.items()))
    update_attrs(out, "ingest", report)
    return Result(str(out), len(plan.spec.sample_ids), len(todo) - len(failed), complete, problems)


def format_summary(result: Result, show: int = 10) -> str:
    lines = [f"store {result.store}: {result.complete} of {result.planned} planned samples complete "
             f"({result.written} written now); {len(result.problems)} excluded"]
    if result.problems:
        kinds = Counter(kind for _, kind, _ in result.problems)
        lines.append("| reason | samples |")
        lines.append("|---|---:|")
        lines += [f"| {kind} | {n} |" for kind, n in kinds.most_common()]
        for sid, kind, detail in result.problems[:show]:
            lines.append(f"  {sid}: {kind}: {detail}")
        if len(result.problems) > show:
            lines.append(f"  ... {len(result.problems) - show} more (all in the store's 'ingest' attribute)")
    return "\n".join(lines)
