"""Results of several evaluations in the paper's table layout: methods as rows, domain shifts as columns.

Each evaluation folder (written by `vdatrain eval`) holds `results.json` with the
recipe's report label (`label`, default its name), the shift (source dataset ->
target dataset, from the stores) and the protocol it reports first. Outputs: a
Markdown table (mIoU per method and shift, then the temporal consistency
PL-PredConsis-mIoU per method, shift and frame distance under each class protocol, the
runs' own first), the same as CSV, and charts (matplotlib): mIoU per method and shift,
IoU per class, and the runs' training curves.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ReportError(ValueError):
    """A folder that holds no evaluation result; the message names it."""


@dataclass
class Row:
    label: str
    shift: str
    miou: float  # under the run's protocol
    predconsis: dict  # protocol -> flow pair -> PL-PredConsis-mIoU
    folder: str
    protocol: str = "standard"
    per_class: dict | None = None  # class -> IoU % under the run's protocol
    log: str | None = None  # the run's log.jsonl, when the folder is (in) a run folder


def load(folder) -> Row:
    """An evaluation folder, or a run folder whose `eval/` holds one."""
    folder = Path(folder)
    path = next((p for p in (folder / "results.json", folder / "eval" / "results.json") if p.is_file()), None)
    if path is None:
        raise ReportError(f"{folder}: no results.json here or in {folder / 'eval'} (run `vdatrain eval` first)")
    try:
        result = json.loads(path.read_text())
        info = result.get("run", {})
        protocol = info.get("protocol", next(iter(result["miou"])))
        predconsis: dict = {}
        for pair, t in result.get("temporal", {}).items():
            by_protocol = {"standard": t} if "predconsis_miou" in t else t  # results.json before both protocols
            for p, metrics in by_protocol.items():
                predconsis.setdefault(p, {})[pair] = float(metrics["predconsis_miou"])
        log = next((p for p in (folder / "log.jsonl", path.parent.parent / "log.jsonl") if p.is_file()), None)
        return Row(label=info.get("label") or folder.name, shift=info.get("shift", "?"),
                   miou=float(result["miou"][protocol]), folder=str(folder), predconsis=predconsis, protocol=protocol,
                   per_class=result.get("per_class", {}).get(protocol), log=str(log) if log else None)
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as e:
        raise ReportError(f"{path}: not an evaluation result ({e})") from None


def tables(rows: list[Row]) -> tuple[list[str], list[str], dict]:
    """-> (method labels in first-seen order, shifts in first-seen order, {(label, shift): [mIoU, ...]}).

    Several runs of one method on one shift (seeds) share a cell: the tables show their mean."""
    labels = list(dict.fromkeys(r.label for r in rows))
    shifts = list(dict.fromkeys(r.shift for r in rows))
    cell: dict = {}
    for r in rows:
        cell.setdefault((r.label, r.shift), []).append(r.miou)
    return labels, shifts, cell


def _cell_text(mious: list[float] | None) -> str:
    if not mious:
        return "–"
    mean = f"{float(np.mean(mious)):.1f}"
    return mean if len(mious) == 1 else f"{mean} ± {float(np.std(mious)):.1f} (n={len(mious)})"


def markdown(rows: list[Row]) -> str:
    labels, shifts, cell = tables(rows)
    out = ["| method | " + " | ".join(shifts) + " |", "|---|" + "---:|" * len(shifts)]
    for label in labels:
        out.append(f"| {label} | " + " | ".join(_cell_text(cell.get((label, s))) for s in shifts) + " |")
    for protocol, pairs in _temporal_columns(rows):
        out += ["", f"PL-PredConsis-mIoU (temporal consistency of predictions), {protocol} protocol:", "",
                "| method | shift | " + " | ".join(pairs) + " |", "|---|---|" + "---:|" * len(pairs)]
        for r in rows:
            values = r.predconsis.get(protocol, {})
            if values:
                out.append(f"| {r.label} | {r.shift} | " + " | ".join(
                    f"{values[p]:.1f}" if p in values else "–" for p in pairs) + " |")
    return "\n".join(out) + "\n"


def _temporal_columns(rows: list[Row]) -> list[tuple[str, list[str]]]:
    """(protocol, flow pairs) with PredConsis figures: the runs' own protocols first, as their mIoU."""
    protocols = list(dict.fromkeys([r.protocol for r in rows] + [p for r in rows for p in r.predconsis]))
    out = []
    for protocol in protocols:
        pairs = list(dict.fromkeys(pair for r in rows for pair in r.predconsis.get(protocol, {})))
        if pairs:
            out.append((protocol, pairs))
    return out


def csv_text(rows: list[Row]) -> str:
    columns = [(protocol, pair) for protocol, pairs in _temporal_columns(rows) for pair in pairs]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "shift", "protocol", "miou", *(f"predconsis_miou/{p}/{pair}" for p, pair in columns),
                "folder"])
    for r in rows:
        w.writerow([r.label, r.shift, r.protocol, f"{r.miou:.2f}",
                    *(f"{r.predconsis[p][pair]:.2f}" if pair in r.predconsis.get(p, {}) else "" for p, pair in columns),
                    r.folder])
    return buf.getvalue()


def _records(path: str) -> list[dict]:
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the rest of the log still draws
    return out


def write(rows: list[Row], out_dir) -> list[Path]:
    """table.md, table.csv, miou.png (mIoU per method and shift), per_class.png (IoU per class, one chart per
    shift with several methods) and curves.png (training curves of the runs whose log is at hand) in `out_dir`."""
    from flowprep.figures import save
    from vdatrain import figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(rows))
    (out / "table.csv").write_text(csv_text(rows))
    written = [out / "table.md", out / "table.csv", save(figures.miou_chart(*tables(rows)), out / "miou.png")]
    for shift in dict.fromkeys(r.shift for r in rows):
        per_class: dict = {}
        for r in rows:  # seeds of one method: the mean per class
            if r.shift == shift and r.per_class:
                for c, v in r.per_class.items():
                    per_class.setdefault(r.label, {}).setdefault(c, []).append(v)
        if per_class:
            means = {label: {c: (float(np.mean([x for x in v if x is not None])) if any(x is not None for x in v)
                                 else None) for c, v in classes.items()} for label, classes in per_class.items()}
            name = "per_class.png" if len({r.shift for r in rows}) == 1 else \
                f"per_class_{shift.replace(' -> ', '_to_').replace(' ', '_')}.png"
            fig = figures.per_class_chart(means)
            fig.suptitle(f"IoU per class, {shift}", fontsize=9)
            written.append(save(fig, out / name))
    logs = {}
    for r in rows:
        if r.log:
            logs.setdefault(r.label if r.label not in logs else f"{r.label} ({Path(r.log).parent.name})",
                            _records(r.log))
    if logs:
        written.append(save(figures.training_curves(logs), out / "curves.png"))
    return written
