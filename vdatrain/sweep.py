"""Sweeps: one resumable run per (recipe, seed) under one folder, launched here or on SLURM.

A run is a plain `vdatrain fit` followed by `vdatrain eval`, each a subprocess, in the folder
`<out>/<recipe name>/seed<N>` (`fit`'s run folder; the evaluation goes to its `eval/`). Its state lives
beside it in `sweep-state.json` (queued, running, done, interrupted, failed with the exit code; the SLURM
job or the local process) and its output in `sweep.log`. A run is done when both commands exited 0;
starting the sweep again skips done runs and resumes the others: `fit` from their last checkpoint (exact
resumption: the same result as an uninterrupted run), an interrupted evaluation from its start (said so).
`<out>/sweep.json` lists the runs, so `vdatrain sweep --status OUT` and `vdatrain report OUT` find them.

Stopping a sweep (Ctrl-C, `kill -INT` or `kill -TERM` of `vdatrain sweep`) stops its children too: each
runs in a process group of its own, which the sweep ends and waits for, and the run is marked
interrupted. One `vdatrain sweep` works in a sweep folder at a time (`vdatrain.lock`).

Launchers:
- local: the visible GPUs split into groups of `gpus_per_run`, one run per group at a time
  (CUDA_VISIBLE_DEVICES); on a machine without GPUs, one run after the other (`vdatrain.local`).
- slurm: one job per run through submitit, which writes the sbatch script; on preemption or timeout
  (SIGUSR2 before the kill) submitit requeues the same job (`SweepRun.checkpoint`; `vdatrain.slurm`).
- submitit-local: the slurm path (the same job object, pickled and run by submitit) on this machine, in
  subprocesses, waiting for them: a check of a sweep's jobs without a cluster.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SWEEP_FILE = "sweep.json"
STATE_FILE = "sweep-state.json"
LOG_FILE = "sweep.log"
LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass
class SweepRun:
    """One (recipe, seed): its commands and its state. Picklable (submitit sends it to the job)."""

    name: str  # "<recipe name>/seed<N>", the run folder below the sweep folder
    recipe: str  # a recipe file or a shipped recipe's name
    seed: int
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE for fit and eval
    run_dir: str = ""
    gpus: int = 1  # processes of one run (torchrun) when > 1

    def commands(self) -> list[list[str]]:
        sets = [a for s in [*self.overrides, f"train.seed={self.seed}"] for a in ("--set", s)]
        fit = ["-m", "vdatrain", "fit", self.recipe, "--run-dir", self.run_dir, *sets]
        if self.gpus > 1:
            fit = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(self.gpus), *fit[1:]]
        ev = ["-m", "vdatrain", "eval", self.recipe, "--ckpt", str(Path(self.run_dir) / "checkpoint.pt"),
              "--out", str(Path(self.run_dir) / "eval"), *sets]
        return [[sys.executable, *fit], [sys.executable, *ev]]

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> dict:
        try:
            return json.loads((Path(self.run_dir) / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "queued"}

    def set_state(self, state: str, **info) -> None:
        path = Path(self.run_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}))
        os.replace(tmp, path)

    def done(self) -> bool:
        return self.state()["state"] == "done" and (Path(self.run_dir) / "eval/results.json").is_file()

    def progress(self) -> str:
        """How this run starts: "started", "resumed from iteration N", or "training done, evaluation again"."""
        from vdatrain.checkpoint import CHECKPOINT

        ckpt = Path(self.run_dir) / CHECKPOINT
        if not ckpt.is_file():
            return "started"
        its = _logged_iterations(Path(self.run_dir))
        if self.state().get("stage") == "eval":
            return "training done; evaluating again (an interrupted evaluation starts over)"
        return f"resumed from iteration {max((i for i in its if i), default=0)}" if its else "resumed"

    # -- the job -----------------------------------------------------------------------------------
    def __call__(self, env: dict | None = None) -> int:
        """Run fit, then eval (skipped when done); returns the exit status of the first that failed, else 0. On
        KeyboardInterrupt (the sweep stopped) the child's process group is ended, the run marked interrupted."""
        if self.done():
            return 0
        where = {"host": socket.gethostname(), "pid": os.getpid()}
        if os.environ.get("SLURM_JOB_ID"):
            where["slurm_job"] = os.environ["SLURM_JOB_ID"]
        log_path = Path(self.run_dir) / LOG_FILE
        for stage, cmd in zip(("fit", "eval"), self.commands()):
            self.set_state("running", stage=stage, **where)
            with open(log_path, "a") as log:
                log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {' '.join(cmd)}\n")
                log.flush()
                # a process group of its own: the sweep ends it, and a terminal's Ctrl-C reaches only the sweep
                child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})}, start_new_session=True)
                _ACTIVE[self.name] = child
                try:
                    rc = child.wait()
                except BaseException:
                    _stop(child)
                    self.set_state("interrupted", stage=stage, **where)
                    raise
                finally:
                    _ACTIVE.pop(self.name, None)
            if STOPPING.is_set():  # the sweep was stopped while this child ran: it ended it
                self.set_state("interrupted", stage=stage, **where)
                return 130
            if rc != 0:
                self.set_state("failed", exit_code=rc, command=cmd[2:5], stage=stage, **where)
                return rc
        self.set_state("done", **where)
        return 0

    def checkpoint(self, *args, **kwargs):
        """submitit: on preemption or timeout, requeue this same run (fit resumes from its checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


_ACTIVE: dict[str, subprocess.Popen] = {}  # the children running now, by run name
STOPPING = threading.Event()  # set when the sweep is stopped


def stop_all() -> None:
    """Stop every running child (the sweep was interrupted); their runs mark themselves interrupted."""
    STOPPING.set()
    for child in list(_ACTIVE.values()):
        _stop(child)


def _stop(child: subprocess.Popen, grace: float = 30.0) -> None:
    """End a child's process group: SIGINT (a fit stops between iterations), then SIGKILL after `grace` s."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _logged_iterations(run_dir: Path) -> list[int]:
    log = run_dir / "log.jsonl"
    out = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "checkpoint" in rec:
            out.append(int(rec.get("iteration", 0)))
    return out


# -- planning --------------------------------------------------------------------------------------
def resolve_recipes(patterns: list[str]) -> list[str]:
    """Recipe files, shipped names and globs over shipped names (`dlv2-hrda-*-viper-cs`), in order, once each."""
    from vdatrain.recipe import RecipeError, shipped_recipes

    names = list(shipped_recipes())
    out: list[str] = []
    for p in patterns:
        if Path(p).is_file() or not any(c in p for c in "*?["):
            found = [p]
        else:
            found = fnmatch.filter(names, p)
            if not found:
                raise RecipeError(f"{p}: no shipped recipe matches this pattern (`vdatrain recipes` lists them)")
        out += [f for f in found if f not in out]
    return out


def plan(patterns: list[str], seeds: list[int] | None, overrides: list[str], out, gpus: int = 1) -> list[SweepRun]:
    """Every (recipe, seed) run, each recipe validated with its overrides before anything is launched."""
    from vdatrain.recipe import load_recipe

    runs = []
    for recipe in resolve_recipes(patterns):
        r = load_recipe(recipe, list(overrides))
        for seed in seeds or [r.train.seed]:
            load_recipe(recipe, [*overrides, f"train.seed={seed}"])
            name = f"{r.name}/seed{seed}"
            runs.append(SweepRun(name, recipe, seed, list(overrides), str(Path(out) / name), gpus))
    return runs


def save(out, runs: list[SweepRun], launcher: str) -> None:
    """Add `runs` to OUT/sweep.json (runs already listed keep their entry)."""
    path = Path(out) / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    listed = {r.name: r for r in load(out)} if path.is_file() else {}
    for r in runs:
        listed[r.name] = r
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"launcher": launcher, "runs": [asdict(r) for r in listed.values()]}, indent=2))
    os.replace(tmp, path)


def load(out) -> list[SweepRun]:
    from vdatrain.recipe import RecipeError

    path = Path(out) / SWEEP_FILE
    try:
        data = json.loads(path.read_text())
        return [SweepRun(**r) for r in data["runs"]]
    except FileNotFoundError:
        raise RecipeError(f"{path}: not found (is {out} a sweep folder?)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RecipeError(f"{path}: not a sweep file ({e})") from None


# -- status ----------------------------------------------------------------------------------------
def _alive(state: dict) -> bool:
    if state.get("host") != socket.gethostname() or "pid" not in state or state.get("slurm_job"):
        return True  # cannot tell from here: trust the record
    try:
        os.kill(int(state["pid"]), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def status(out) -> list[dict]:
    """One row per run: name, state (done, running, interrupted, failed, queued), iteration reached, mIoU when
    evaluated, log tail when failed."""
    rows = []
    for r in load(out):
        s = r.state()
        row = {"name": r.name, "state": s["state"], "run_dir": r.run_dir}
        if s["state"] == "running" and not _alive(s):
            row["state"] = "interrupted"
        for key in ("slurm_job", "local_job", "exit_code"):
            if key in s:
                row[key] = s[key]
        log = Path(r.run_dir) / "log.jsonl"
        if log.is_file():
            its = [json.loads(line).get("iteration", 0) for line in log.read_text().splitlines() if line.strip()]
            row["iteration"] = max(its, default=0)
        results = Path(r.run_dir) / "eval/results.json"
        if s["state"] == "done" and results.is_file():
            res = json.loads(results.read_text())
            protocol = res.get("run", {}).get("protocol", "standard")
            row["miou"] = round(res["miou"][protocol], 2)
        if s["state"] == "failed":
            text = (Path(r.run_dir) / LOG_FILE).read_text() if (Path(r.run_dir) / LOG_FILE).is_file() else ""
            row["log_tail"] = text.strip().splitlines()[-5:]
        rows.append(row)
    return rows


def format_status(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    lines = ["| run | state | iteration | mIoU | job |", "|---|---|---:|---:|---|"]
    for row in rows:
        job = row.get("slurm_job") or row.get("local_job") or ""
        lines.append(f"| {row['name']} | {row['state']}{' (exit %s)' % row['exit_code'] if 'exit_code' in row else ''}"
                     f" | {row.get('iteration', '')} | {row.get('miou', '')} | {job} |")
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    for row in rows:
        if row.get("log_tail"):
            lines.append(f"\n{row['name']} failed; the end of {Path(row['run_dir']) / LOG_FILE}:")
            lines += [f"  {line}" for line in row["log_tail"]]
    return "\n".join(lines)


def run_dirs(out) -> list[Path]:
    """The run folders of a sweep (for `vdatrain report`)."""
    return [Path(r.run_dir) for r in load(out)]
