"""Progress of long jobs: a bar on a terminal, timestamped lines in a log (nohup, SLURM)."""

import io
import re
import subprocess
import sys

from flowprep.progress import Progress

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<desc>[\w ]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) "
                  r"\((?P<pct>[\d.]+)%\)")


def test_lines_at_a_steady_cadence_with_rate_eta_and_fields():
    out = io.StringIO()
    p = Progress(10, "fit", "it", tty=False, every=3600, stream=out)
    for k in range(10):
        p.update(1, loss=0.5 - k / 100, lr=6e-5)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first update and the last: the cadence holds the rest back
    first, last = (LINE.match(line) for line in lines)
    assert first["done"] == "1" and last["done"] == "10" and last["pct"] == "100.0"
    assert "ETA" in lines[0] and "loss 0.41" in lines[1] and "lr 6.0e-05" in lines[1]


def test_a_resumed_job_counts_from_where_it_was():
    out = io.StringIO()
    p = Progress(100, "fit", "it", initial=40, tty=False, every=0, stream=out)
    p.update()
    assert LINE.match(out.getvalue())["done"] == "41"


def test_fit_and_flow_print_timestamped_lines_when_not_on_a_terminal(tiny_cs_store, tmp_path):
    env = {"VDA_PROGRESS_SECONDS": "0"}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
name: progress
model: {{name: deeplabv2_check}}
source: {{store: {tiny_cs_store}, crop: [32, 64]}}
eval: {{store: {tiny_cs_store}, window: [64, 128], stride: [32, 64]}}
train: {{iters: 3, batch_size: 2, log_every: 1, checkpoint_every: 3, workers: 0, eval_every: 0}}
""")
    import os

    fit = subprocess.run([sys.executable, "-m", "vdatrain", "fit", str(recipe), "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, env={**os.environ, **env})
    assert fit.returncode == 0, fit.stderr[-2000:]
    lines = [m for m in map(LINE.match, fit.stderr.splitlines()) if m and m["desc"] == "fit"]
    assert [m["done"] for m in lines] == ["1", "2", "3"] and all(m["total"] == "3" for m in lines)
    assert "loss " in fit.stderr and ("s/it" in fit.stderr or "it/s" in fit.stderr)
    flow = subprocess.run([sys.executable, "-m", "flowprep", "flow", str(tiny_cs_store), "--model", "dis", "--pairs",
                           "bwd:1"], capture_output=True, text=True, env={**os.environ, **env})
    assert flow.returncode == 0, flow.stderr[-2000:]
    lines = [m for m in map(LINE.match, flow.stderr.splitlines()) if m and m["desc"] == "flow dis"]
    assert lines and lines[-1]["done"] == lines[-1]["total"] == "2"
