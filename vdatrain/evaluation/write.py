"""Evaluation outputs: per-class IoU (CSV, Markdown, JSON) and the confusion matrix.

`write_results` writes an evaluation's result (`vdatrain.evaluation.evaluate`); `results_markdown` is the
table the CLI prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vdatrain.metrics.miou import PROTOCOLS


def write_results(result: dict, conf: np.ndarray, out_dir) -> None:
    """results.json, per_class.csv, per_class.md and confusion.npy in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "confusion.npy", conf)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    per_class = result["per_class"]
    (out / "per_class.csv").write_text("class," + ",".join(PROTOCOLS) + "\n" + "".join(
        f"{name}," + ",".join("" if per_class[p][name] is None else f"{per_class[p][name]:.2f}" for p in PROTOCOLS)
        + "\n" for name in per_class[PROTOCOLS[0]]))
    (out / "per_class.md").write_text(results_markdown(result))


def results_markdown(result: dict) -> str:
    protocols = list(result["miou"])
    lines = ["| class | " + " | ".join(f"IoU ({p})" for p in protocols) + " |", "|---|" + "---:|" * len(protocols)]
    for name in result["per_class"][protocols[0]]:
        cells = [result["per_class"][p][name] for p in protocols]
        lines.append(f"| {name} | " + " | ".join("n/a" if c is None else f"{c:.1f}" for c in cells) + " |")
    lines.append("| **mIoU** | " + " | ".join(f"**{result['miou'][p]:.1f}**" for p in protocols) + " |")
    if result.get("temporal"):
        lines += ["", "| flow pair | protocol | PredConsis mIoU | Warped mIoU | Warped Acc (recall) | "
                      "Warped Acc (precision, the reference's) | Consistency mIoU | Consistency Acc (recall) | "
                      "retained % |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for pair, by_protocol in result["temporal"].items():
            for p in protocols:
                t = by_protocol[p]
                lines.append(f"| {pair} | {p} | " + " | ".join(f"{t[k]:.1f}" for k in (
                    "predconsis_miou", "warped_miou", "warped_acc", "warped_acc_precision", "consistency_miou",
                    "consistency_acc", "retained")) + " |")
    return "\n".join(lines) + "\n"
