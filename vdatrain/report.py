"""Results of several evaluations in the paper's table layout: methods as rows, domain shifts as columns.

Each evaluation folder (written by `vdatrain eval`) holds `results.json` with the
recipe's report label (`label`, default its name), the shift (source dataset ->
target dataset, from the stores), the protocol it reports first, the seed, and the
run's configuration (`run_config`: the trained recipe's values that decide a result).
Runs are averaged only when they differ in the seed alone: a row is (label, every other
configuration value); two rows of one label are told apart by the values that differ
("Source only [train.iters=6]"). The same evaluation given twice counts once.

Outputs: a Markdown table (mIoU per method and shift, as mean ± std (n, seeds) for
several seeds, then the temporal consistency PL-PredConsis-mIoU per method, shift and
frame distance under each class protocol, the runs' own first), the same as CSV, and
charts (matplotlib): mIoU per method and shift, IoU per class, and the runs' training
curves.
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


# Recipe values that do not change a result: bookkeeping, where data lives, how fast it is read.
NEUTRAL = ("name", "description", "label", "data_root", "imports", "train.seed", "train.workers", "train.log_every",
           "train.checkpoint_every", "train.keep_checkpoints", "train.verify_reads", "train.dist_timeout_min",
           "eval.window_batch")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flat(v, key + ".")
        else:
            out[key] = v
    return out


def run_config(recipe: dict) -> dict:
    """The values of a recipe (as `recipe.json` holds it) that decide a result: every key but the `NEUTRAL` ones,
    stores by file name, flattened to dotted keys."""
    flat = _flat(recipe)
    out = {}
    for k, v in flat.items():
        if k in NEUTRAL:
            continue
        out[k] = Path(v).name if k.endswith(".store") and isinstance(v, str) else v
    return out


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
    config: dict | None = None  # `run_config` of the trained recipe (None: an older results.json)
    seed: int | None = None
    source: str = ""  # the results.json read (the same evaluation given twice counts once)


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
                   per_class=result.get("per_class", {}).get(protocol), log=str(log) if log else None,
                   config=info.get("config"), seed=info.get("seed"), source=str(path.resolve()))
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as e:
        raise ReportError(f"{path}: not an evaluation result ({e})") from None


def group(rows: list[Row]) -> list[Row]:
    """The rows once per evaluation (the same results.json given twice counts once), each labelled by what
    sets it apart from the other runs of its label: runs that differ in more than the seed never share a cell."""
    unique = list({r.source or r.folder: r for r in rows}.values())
    variants: dict = {}
    for r in unique:
        key = json.dumps(r.config, sort_keys=True, default=str) if r.config is not None else None
        variants.setdefault((r.label, r.shift), {}).setdefault(key, []).append(r)
    out = []
    for (label, _), by_config in variants.items():
        configs = [json.loads(k) if k else {} for k in by_config]
        differing = sorted({k for c in configs for k in c if len({json.dumps(x.get(k), default=str)
                                                                  for x in configs}) > 1})
        for key, runs in by_config.items():
            config = json.loads(key) if key else {}
            named = label if len(by_config) == 1 else f"{label} [" + ", ".join(
                f"{k}={config.get(k)}" for k in differing[:3]) + (", ..." if len(differing) > 3 else "") + "]"
            out += [Row(**{**r.__dict__, "label": named}) for r in runs]
    return out


def tables(rows: list[Row]) -> tuple[list[str], list[str], dict]:
    """-> (method labels in first-seen order, shifts in first-seen order, {(label, shift): [mIoU, ...]}).

    Runs of one method on one shift that differ in the seed alone share a cell: the tables show their mean."""
    rows = group(rows)
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


def _seeds(rows: list[Row], label: str, shift: str) -> str:
    seeds = [r.seed for r in rows if r.label == label and r.shift == shift and r.seed is not None]
    return f"seeds {', '.join(map(str, sorted(seeds)))}" if seeds else ""


def markdown(rows: list[Row]) -> str:
    rows = group(rows)
    labels, shifts, cell = tables(rows)
    out = ["| method | " + " | ".join(shifts) + " |", "|---|" + "---:|" * len(shifts)]
    for label in labels:
        out.append(f"| {label} | " + " | ".join(_cell_text(cell.get((label, s))) for s in shifts) + " |")
    seeds = [f"{label}, {s}: {_seeds(rows, label, s)}" for label in labels for s in shifts
             if len(cell.get((label, s), [])) > 1 and _seeds(rows, label, s)]
    if seeds:
        out += ["", "Runs averaged (they differ in the seed alone): " + "; ".join(seeds) + "."]
    for protocol, pairs in _temporal_columns(rows):
        out += ["", f"PL-PredConsis-mIoU (temporal consistency of predictions), {protocol} protocol:", "",
                "| method | shift | " + " | ".join(pairs) + " |", "|---|---|" + "---:|" * len(pairs)]
        for label in labels:
            for shift in shifts:
                runs = [r.predconsis.get(protocol, {}) for r in rows if r.label == label and r.shift == shift]
                if any(runs):
                    out.append(f"| {label} | {shift} | " + " | ".join(
                        _cell_text([v[p] for v in runs if p in v] or None) for p in pairs) + " |")
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
    rows = group(rows)
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
    rows = group(rows)
    (out / "table.md").write_text(markdown(rows))
    (out / "table.csv").write_text(csv_text(rows))
    protocols = ", ".join(dict.fromkeys(r.protocol for r in rows))
    seeds = sorted({r.seed for r in rows if r.seed is not None})
    title = f"mIoU, {protocols} protocol" + (f"; seeds {', '.join(map(str, seeds))} (mean, error bar: std)"
                                             if len(seeds) > 1 else (f"; seed {seeds[0]}" if seeds else ""))
    written = [out / "table.md", out / "table.csv",
               save(figures.miou_chart(*tables(rows), title=title), out / "miou.png")]
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
