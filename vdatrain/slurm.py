"""Sweep runs as SLURM jobs through submitit (`vdatrain sweep --launcher slurm`), or submitit's local executor.

Each `vdatrain.sweep.SweepRun` not yet done is submitted as its own job (submitit pickles it and writes the
sbatch script); on preemption or timeout SLURM sends SIGUSR2 before the kill and submitit requeues the same
job, which resumes from the run's last checkpoint.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vdatrain.sweep import SweepRun


@dataclass
class SlurmOptions:
    partition: str | None = None
    time_min: int = 24 * 60
    account: str | None = None
    qos: str | None = None
    cpus_per_run: int = 8
    mem_gb: int | None = None
    extra: dict = field(default_factory=dict)  # further #SBATCH --key=value


def submit(runs: list[SweepRun], out, options: SlurmOptions, gpus_per_run: int = 1, cluster: str = "slurm",
           say=print) -> dict[str, str]:
    """Submit every run not yet done as its own job through submitit; returns {name: job id}. With
    cluster="local" (submitit's local executor) the jobs run here and this waits for them."""
    import submitit

    folder = Path(out) / "slurm" / "%j"
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if cluster == "slurm" and missing:  # an environment failure: one line, exit 1
        raise OSError(errno.ENOENT, f"{' and '.join(missing)} not found on PATH: --launcher slurm runs on a SLURM "
                                    f"login node (elsewhere: --launcher local)")
    if cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=100)
        params = {"time": options.time_min, "gpus_per_node": gpus_per_run, "cpus_per_task": options.cpus_per_run,
                  "ntasks_per_node": 1, "additional_parameters": {"requeue": True, **options.extra}}
        for key in ("partition", "account", "qos"):
            if getattr(options, key):
                params[key] = getattr(options, key)
        if options.mem_gb:
            params["mem"] = f"{options.mem_gb}GB"
        executor.update_parameters(**params)
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.time_min)
    jobs = {}
    for r in runs:
        if r.done():
            say(f"{r.name}: done already")
            continue
        executor.update_parameters(**({"job_name": r.name} if cluster == "slurm" else {}))
        job = executor.submit(r)
        r.set_state("queued", **({"slurm_job": job.job_id} if cluster == "slurm" else {"local_job": job.job_id}))
        jobs[r.name] = job
        say(f"{r.name}: submitted as job {job.job_id}")
    if cluster != "slurm":
        for name, job in jobs.items():
            rc = job.result()
            say(f"{name}: " + ("done" if rc == 0 else f"failed (exit {rc})"))
    return {name: job.job_id for name, job in jobs.items()}
