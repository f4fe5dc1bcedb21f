"""bench/gpu_acceptance.sh runs end to end in its --cpu-smoke mode (tiny replicas, narrow networks, FlowFormer
at 76x112), so the script a GPU session runs as it is cannot rot before a GPU is lent."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_acceptance_script_runs_on_the_cpu_and_writes_its_tables(tmp_path):
    env = {**os.environ, "PY": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu_acceptance.sh"), "--cpu-smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "gpu_acceptance.md").read_text()
    assert "## FlowFormer: plain ptlflow loop vs batched tiles" in report and "| plain ptlflow loop, fp32" in report
    rows = [line for line in report.splitlines() if line.startswith(("| dlv2-", "| segformer-", "| dinov3l-"))]
    # DeepLabV2 in two modes, SegFormer and DINOv3 in one, and DeepLabV2 under torchrun with 2 processes (DDP,
    # SyncBatchNorm)
    assert len(rows) == 5 and all(line.endswith("| ok |") for line in rows), report
    assert any("(torchrun, 2 processes)" in line for line in rows)
    assert "## Data pipeline" in report and "pipeline bench failed" not in report
    assert "deeplabv2_check" in report and "daformer_check" in report and "daformer_timm_check" in report
    assert "## Backbones at the paper's evaluation geometry" in report and "backbones bench failed" not in report
    assert "| DINOv3 ViT-L/16 single-scale | 306.0 |" in report  # parameters counted at the paper's geometry
    assert "| 1280x720 | deeplabv2_check HRDA" in report and "predict bench failed" not in report
