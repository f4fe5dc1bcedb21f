"""Results of several evaluations in the paper's table layout: methods as rows, domain shifts as columns.

Each evaluation folder (written by `vdatrain eval`) holds `results.json` with the
recipe's report label (`label`, default its name), the shift (source dataset ->
target dataset, from the stores) and the protocol it reports first. Outputs: a
Markdown table (mIoU per method and shift, then the temporal consistency
PL-PredConsis-mIoU per method, shift and frame distance under each class protocol, the
runs' own first), the same as CSV, and a
grouped bar chart PNG of mIoU.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # RGB


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
        return Row(label=info.get("label") or folder.name, shift=info.get("shift", "?"),
                   miou=float(result["miou"][protocol]), folder=str(folder), predconsis=predconsis, protocol=protocol)
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


def bar_chart(rows: list[Row], path, height: int = 420) -> None:
    """Grouped bars: one group per shift, one bar per method (mean over its runs), mIoU 0-100 on the y axis."""
    import cv2

    labels, shifts, cell = tables(rows)
    font = cv2.FONT_HERSHEY_SIMPLEX
    bar, gap, left, top, bottom = 22, 28, 60, 34, 60
    widest = max(cv2.getTextSize(s, font, 0.4, 1)[0][0] for s in shifts)
    group = max(bar * len(labels), widest) + gap  # the shift's name fits under its bars
    legend_w = 30 + max(cv2.getTextSize(s, font, 0.4, 1)[0][0] for s in labels)
    width = left + group * len(shifts) + legend_w
    img = np.full((height, width, 3), 255, np.uint8)
    plot_h = height - top - bottom
    y_of = lambda v: int(round(top + plot_h * (1 - v / 100)))  # noqa: E731
    for v in range(0, 101, 20):
        cv2.line(img, (left, y_of(v)), (left + group * len(shifts), y_of(v)), (220, 220, 220), 1)
        cv2.putText(img, str(v), (left - 34, y_of(v) + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "mIoU", (4, 14), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for g, shift in enumerate(shifts):
        x0 = left + g * group + gap // 2
        for m, label in enumerate(labels):
            if (label, shift) in cell:
                colour = PALETTE[m % len(PALETTE)][::-1]  # BGR for OpenCV
                mean = float(np.mean(cell[label, shift]))
                cv2.rectangle(img, (x0 + m * bar, y_of(mean)), (x0 + (m + 1) * bar - 3, y_of(0)),
                              colour, -1)
        cv2.putText(img, shift, (x0, height - bottom + 22), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, (left, y_of(0)), (left + group * len(shifts), y_of(0)), (0, 0, 0), 1)
    for m, label in enumerate(labels):
        y = top + 10 + 18 * m
        lx = left + group * len(shifts) + 10
        cv2.rectangle(img, (lx, y - 9), (lx + 10, y + 1), PALETTE[m % len(PALETTE)][::-1], -1)
        cv2.putText(img, label, (lx + 14, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise ReportError(f"{path}: could not write the chart")


def write(rows: list[Row], out_dir) -> list[Path]:
    """table.md, table.csv and miou.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(rows))
    (out / "table.csv").write_text(csv_text(rows))
    bar_chart(rows, out / "miou.png")
    return [out / "table.md", out / "table.csv", out / "miou.png"]
