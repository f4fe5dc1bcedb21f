"""One exit-code policy for both command lines (flowprep.exits): an environment failure (a read-only output
folder, a full disk) is one line naming the file and exit status 1, never a traceback, and leaves no
temporary file behind. Commands run as a user without write permission (root ignores permissions), and a
full disk is a file size limit (RLIMIT_FSIZE: writes then fail with EFBIG, as with ENOSPC)."""

import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowprep.cli import cli as flowprep_cli
from vdatrain.cli import cli as vdatrain_cli

RECIPE = """
name: exits-source-only
model: {{name: deeplabv2_check}}
source: {{store: {store}, crop: [32, 64]}}
eval: {{store: {store}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 1}}
train: {{iters: 2, batch_size: 2, log_every: 1, checkpoint_every: 2, workers: 0, eval_every: 0}}
"""


@pytest.fixture(scope="module")
def place(synth_tiny):
    """A world-readable folder: a copy of the replica, a store with flow, a recipe, a finished run and its
    evaluation, and `ro/`, a folder nobody but root may write."""
    d = Path(tempfile.mkdtemp(prefix="vda-exits-"))
    d.chmod(0o755)
    shutil.copytree(synth_tiny, d / "raw")
    store = d / "cityscapes-seq_val.zarr"
    for args in (["ingest", "cityscapes-seq", "--root", str(d / "raw"), "--split", "val", "--out", str(store),
                  "--workers", "1"], ["flow", str(store), "--model", "dis", "--pairs", "bwd:1"]):
        result = CliRunner().invoke(flowprep_cli, args)
        assert result.exit_code == 0, result.output
    (d / "recipe.yaml").write_text(RECIPE.format(store=store))
    for args in (["fit", str(d / "recipe.yaml"), "--run-dir", str(d / "run")],
                 ["eval", str(d / "recipe.yaml"), "--ckpt", str(d / "run/checkpoint.pt"), "--out", str(d / "run/eval"),
                  "--pictures", "1"]):
        result = CliRunner().invoke(vdatrain_cli, args)
        assert result.exit_code == 0, result.output
    shutil.copytree(store, d / "ro-store.zarr")
    for path in [d / "ro-store.zarr", *(d / "ro-store.zarr").rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    (d / "ro").mkdir(mode=0o555)
    for path in [d, *d.rglob("*")]:  # readable by the unprivileged user
        path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
    yield d
    for path in [d, *d.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(d)


def run(place, program, *argv, file_size_limit=None):
    """`program argv` in a subprocess; as an unprivileged user when we are root (permissions then apply),
    except under a file size limit (which applies to root too)."""
    unprivileged = os.geteuid() == 0 and file_size_limit is None
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if unprivileged else []

    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([*prefix, sys.executable, "-m", program, *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, "HOME": str(place), "MPLCONFIGDIR": str(place / "mpl")},
                          preexec_fn=limit, timeout=300)


def assert_one_line_exit_1(proc, names):
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and names in last, proc.stderr[-3000:]


READ_ONLY = {
    "flowprep synth": ("flowprep", "synth", "--out", "{ro}/raw", "--scale", "tiny", "--datasets", "synthia-seq"),
    "flowprep ingest": ("flowprep", "ingest", "cityscapes-seq", "--root", "{d}/raw", "--split", "val",
                        "--out", "{ro}/s.zarr", "--workers", "2"),
    "flowprep flow": ("flowprep", "flow", "{d}/ro-store.zarr", "--model", "dis", "--pairs", "bwd:2"),
    "flowprep flow-export": ("flowprep", "flow-export", "{d}/cityscapes-seq_val.zarr", "--pair", "bwd_1",
                             "--out", "{ro}/flows"),
    "flowprep synth-preview": ("flowprep", "synth-preview", "{d}/raw", "--out", "{ro}/preview"),
    "vdatrain fit": ("vdatrain", "fit", "{d}/recipe.yaml", "--run-dir", "{ro}/run"),
    "vdatrain eval": ("vdatrain", "eval", "{d}/recipe.yaml", "--ckpt", "{d}/run/checkpoint.pt", "--out", "{ro}/eval"),
    "vdatrain report": ("vdatrain", "report", "{d}/run", "--out", "{ro}/report"),
}


@pytest.mark.parametrize("command", list(READ_ONLY))
def test_a_read_only_output_is_one_line_and_exit_1(place, command):
    program, *argv = (a.format(d=place, ro=place / "ro") for a in READ_ONLY[command])
    proc = run(place, program, *argv)
    assert_one_line_exit_1(proc, str(place / ("ro-store.zarr" if command == "flowprep flow" else "ro")))
    assert not any((place / "ro").iterdir())


def test_a_full_disk_during_fit_is_one_line_exit_1_and_leaves_no_temporary_checkpoint(place, tmp_path):
    run_dir = tmp_path / "full-run"
    proc = run(place, "vdatrain", "fit", place / "recipe.yaml", "--run-dir", run_dir, file_size_limit=1 << 20)
    assert_one_line_exit_1(proc, str(run_dir / "checkpoint.pt"))
    assert "could not be written (File too large)" in proc.stderr
    assert not (run_dir / "checkpoint.tmp").exists() and not (run_dir / "checkpoint.pt").exists()


def test_a_full_disk_in_an_ingest_worker_is_one_line_exit_1(place, tmp_path):
    proc = run(place, "flowprep", "ingest", "cityscapes-seq", "--root", place / "raw", "--split", "val", "--out",
               tmp_path / "full.zarr", "--workers", "2", file_size_limit=16 << 10)  # a frame's chunk is 24 KiB
    assert_one_line_exit_1(proc, str(tmp_path / "full.zarr"))
    assert "failed: File too large" in proc.stderr


def test_output_cut_short_by_its_reader_is_not_reported_as_an_error():
    """`vdatrain recipes | head -1`: when the reader has gone, the listing stops quietly with SIGPIPE's status,
    no "error:" line. Our end of the pipe is closed before the command (which takes a second to start) writes."""
    proc = subprocess.Popen([sys.executable, "-m", "vdatrain", "recipes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert err == "" and proc.returncode == 141
