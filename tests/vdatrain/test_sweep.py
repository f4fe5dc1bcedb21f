"""`vdatrain sweep`: recipes x seeds as resumable runs, here or on SLURM, then one report."""

import json
import os
import pickle
import signal
import stat

import pytest
from click.testing import CliRunner

from vdatrain.cli import cli
from vdatrain.sweep import SweepRun, resolve_recipes

RECIPE = """
name: {name}
label: {label}
model: {{name: deeplabv2_check}}
source: {{store: {store}, crop: [32, 64]}}
eval: {{store: {store}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 1, lr: {lr}}}
train: {{iters: 2, batch_size: 2, log_every: 1, checkpoint_every: 2, workers: 0, eval_every: 0}}
"""


@pytest.fixture(scope="module")
def recipes(tiny_store, tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep-recipes")
    store = tiny_store("cityscapes-seq", "val")
    out = []
    for name, label, lr in (("sweep-a", "Method A", "6.0e-5"), ("sweep-b", "Method B", "1.0e-3")):
        (d / f"{name}.yaml").write_text(RECIPE.format(name=name, label=label, lr=lr, store=store))
        out.append(d / f"{name}.yaml")
    return out


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_killed_sweep_resumes_skips_finished_runs_and_reports_seeds_as_mean_and_std(recipes, tmp_path, run_killed):
    out = tmp_path / "sweep"
    args = ["sweep", *recipes, "--seeds", "1,2", "--out", out]
    # killed as the second run starts (states: fit running, eval running, done, then the next run's): the first is
    # done, the others not begun
    killed = run_killed("vdatrain.sweep:SweepRun.set_state", 4, *args, program="vdatrain")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    status = invoke("sweep", "--status", "--out", out)
    assert status.exit_code == 0, status.output
    assert "| sweep-a/seed1 | done | 2 |" in status.output and "1 done, 3 queued" in status.output

    first_log = (out / "sweep-a/seed1/sweep.log").read_text()
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "sweep-a/seed1: done already" in result.output
    assert (out / "sweep-a/seed1/sweep.log").read_text() == first_log  # not run again
    for name in ("sweep-a/seed1", "sweep-a/seed2", "sweep-b/seed1", "sweep-b/seed2"):
        saved = json.loads((out / name / "eval/results.json").read_text())
        assert json.loads((out / name / "recipe.json").read_text())["train"]["seed"] == int(name[-1])
        assert saved["run"]["label"] in ("Method A", "Method B")
    assert "4 done" in invoke("sweep", "--status", "--out", out).output

    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    rows = [line for line in report.output.splitlines() if line.startswith("| Method")]
    assert len(rows) == 2 and all("±" in row and "(n=2)" in row for row in rows)


def test_a_failed_run_is_shown_with_its_log_tail_and_exit_1(recipes, tmp_path):
    out = tmp_path / "sweep"
    result = invoke("sweep", recipes[0], "--out", out, "--set", "model.init=/nonexistent.pt")
    assert result.exit_code == 1 and "1 runs failed: sweep-a/seed1" in result.output
    status = invoke("sweep", "--status", "--out", out)
    assert status.exit_code == 1
    assert "| sweep-a/seed1 | failed (exit 2) |" in status.output
    assert "error: model.init: /nonexistent.pt: file not found" in status.output  # the tail of sweep.log


def test_recipe_globs_select_shipped_recipes_and_a_bad_recipe_stops_everything(recipes, tmp_path):
    table4 = resolve_recipes(["dlv2-hrda-*-viper-cs"])  # Table 4's rows on VIPER -> Cityscapes-Seq, and more
    assert {"dlv2-hrda-tps-viper-cs", "dlv2-hrda-davsn-viper-cs", "dlv2-hrda-udavss-viper-cs",
            "dlv2-hrda-mom-viper-cs"} <= set(table4)
    assert all(n.startswith("dlv2-hrda-") and n.endswith("-viper-cs") for n in table4)
    assert "dlv2-hrda-viper-cs" not in table4 and len(table4) == len(set(table4))
    assert resolve_recipes([str(recipes[0]), "dlv2-hrda-tps-viper-cs", str(recipes[0])]) == [
        str(recipes[0]), "dlv2-hrda-tps-viper-cs"]
    result = invoke("sweep", "nosuch-*", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "nosuch-*: no shipped recipe matches" in result.output
    bad = invoke("sweep", recipes[0], "--out", tmp_path / "s", "--set", "train.iters=-1")
    assert bad.exit_code == 2 and "train.iters" in bad.output and not (tmp_path / "s/sweep.json").exists()


def test_slurm_jobs_are_submitted_through_sbatch_with_requeue(recipes, tmp_path, monkeypatch):
    """A fake sbatch on PATH records the script it receives."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/received.sh\necho "$@" > {tmp_path}/args\n'
                      'echo "Submitted batch job 4242"\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "sweep"
    system_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(bin_dir))  # sbatch alone: not a login node
    alone = invoke("sweep", recipes[0], "--out", out, "--launcher", "slurm")
    assert alone.exit_code == 1 and alone.output.strip().endswith("srun not found on PATH: --launcher slurm runs on "
                                                                    "a SLURM login node (elsewhere: --launcher local)")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it; the job script calls it
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{system_path}")
    result = invoke("sweep", recipes[0], "--seeds", "3", "--out", out, "--launcher", "slurm", "--partition", "gpu",
                    "--time-min", "90", "--gpus-per-run", "2", "--cpus-per-run", "10", "--account", "vda",
                    "--slurm-extra", "constraint=a100")
    assert result.exit_code == 0, result.output
    assert "sweep-a/seed3: submitted as job 4242" in result.output
    script = (tmp_path / "received.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --cpus-per-task=10", "#SBATCH --account=vda", "#SBATCH --requeue",
                 "#SBATCH --signal=USR2@90", "#SBATCH --constraint=a100", "#SBATCH --job-name=sweep-a/seed3"):
        assert line in script, script
    assert "-m submitit.core._submit" in script
    # the job submitit will run: our run object, pickled (this test's own file)
    submitted = next((out / "slurm").rglob("*_submitted.pkl"))
    job = pickle.loads(submitted.read_bytes())
    run = job.function
    assert isinstance(run, SweepRun) and run.seed == 3 and run.gpus == 2
    fit, ev = run.commands()
    assert fit[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node"] and "fit" in fit
    assert "train.seed=3" in fit and ev[3] == "eval"
    status = invoke("sweep", "--status", "--out", out)
    assert "| sweep-a/seed3 | queued |" in status.output and "4242" in status.output


def test_the_slurm_job_object_runs_through_submitits_local_executor(recipes, tmp_path):
    out = tmp_path / "sweep"
    result = invoke("sweep", recipes[1], "--out", out, "--launcher", "submitit-local")
    assert result.exit_code == 0, result.output
    assert (out / "sweep-b/seed1/eval/results.json").is_file()
    assert "1 done" in invoke("sweep", "--status", "--out", out).output


def test_a_run_whose_process_is_gone_shows_as_interrupted_and_restarts(recipes, tmp_path):
    out = tmp_path / "sweep"
    from vdatrain.sweep import plan, save, status

    runs = plan([str(recipes[0])], [4], [], out)
    save(out, runs, "local")
    runs[0].set_state("running", host=__import__("socket").gethostname(), pid=2 ** 22 + 12345)  # no such process
    assert [r["state"] for r in status(out)] == ["interrupted"]
    result = invoke("sweep", recipes[0], "--seeds", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert [r["state"] for r in status(out)] == ["done"]


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line holds `text` (the children a stopped sweep must not leave behind)."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_stopped_sweep_stops_its_children_marks_the_run_and_the_relaunch_resumes_it(recipes, tmp_path):
    """kill -INT of `vdatrain sweep` while its fit trains: the fit's process group is ended (no process of the run
    is left), the run shows as interrupted, a second sweep on the same folder meanwhile is refused naming the
    first, and the relaunch says from which iteration it resumes."""
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "vdatrain", "sweep", str(recipes[0]), "--out", str(out),
            "--set", "train.iters=100", "--set", "train.checkpoint_every=5"]
    sweep = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "sweep-a/seed1/log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and '"checkpoint"' in log.read_text()):
        time.sleep(0.2)
    assert log.is_file(), "the fit never checkpointed"
    busy = invoke("sweep", recipes[0], "--out", out)
    assert busy.exit_code == 1 and f"process {sweep.pid}" in busy.output and "in use" in busy.output
    sweep.send_signal(signal.SIGINT)
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, output
    assert "stopped; its runs are marked interrupted" in output
    assert _processes_mentioning(str(out / "sweep-a")) == []  # the fit child is gone
    status = invoke("sweep", "--status", "--out", out)
    assert "| sweep-a/seed1 | interrupted |" in status.output
    again = invoke("sweep", recipes[0], "--out", out, "--set", "train.iters=100", "--set", "train.checkpoint_every=5")
    assert again.exit_code == 0 and "sweep-a/seed1: resumed from iteration" in again.output


def test_a_sweep_folder_in_use_is_refused_naming_its_holder(recipes, tmp_path):
    from vdatrain.lock import FolderLock

    out = tmp_path / "sweep"
    with FolderLock(out, "sweep folder"):  # another `vdatrain sweep` working in it
        result = invoke("sweep", recipes[0], "--out", out)
    assert result.exit_code == 1 and "this sweep folder is in use by process" in result.output, result.output
    assert not (out / "sweep-a").exists()  # nothing started
