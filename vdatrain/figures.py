"""Figures of training and evaluation, drawn with matplotlib (`flowprep.figures` for panels and legends).

- prediction: image | prediction | ground truth | error map, with the classes' legend;
- refinement: frame t | the teacher's pseudo-label | the partner frame's, warped to t | the refined label with
  the pixels refinement dropped marked;
- training curves from `log.jsonl`: loss terms, pseudo-weight and refinement share, mIoU at each evaluation;
- mIoU per method and shift, and IoU per class per method, with the value axis fitted to the data.
"""

from __future__ import annotations

import numpy as np

from flowprep.figures import class_legend, figure, image_panels
from flowprep.manifest import load_classes
from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from flowprep.viz import colourise

DROPPED = np.array([255, 0, 255], np.uint8)  # magenta: pixels a refinement leaves out


def error_map(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(H, W, 3): correct white, wrong red, unlabelled black."""
    out = np.zeros((*label.shape, 3), np.uint8)
    out[(label != IGNORE) & (pred == label)] = 255
    out[(label != IGNORE) & (pred != label)] = (220, 30, 30)
    return out


def prediction_figure(rgb: np.ndarray, pred: np.ndarray, label: np.ndarray, title: str,
                      evaluated: list[int] | None = None):
    """Four panels and a legend; `pred`, `label` (H, W) trainIds. The pixel accuracy counts the pixels labelled
    with an `evaluated` class (default: any labelled pixel), as the standard protocol does."""
    labelled = label != IGNORE if evaluated is None else np.isin(label, evaluated)
    acc = 100 * float((pred == label)[labelled].mean()) if labelled.any() else float("nan")
    fig, _ = image_panels([("image", rgb), ("prediction", colourise(pred)), ("ground truth", colourise(label)),
                           (f"errors: red wrong, white right ({acc:.1f}% pixel accuracy)", error_map(pred, label))],
                          extra_height=0.6)
    fig.suptitle(title, fontsize=10)
    class_legend(fig, [pred, label])
    return fig


def refinement_figure(rgb: np.ndarray, label_t: np.ndarray, warped_k: np.ndarray, warp_valid: np.ndarray,
                      refined: np.ndarray, title: str):
    """What flow refinement does to a pseudo-label: all (H, W) trainIds; `warped_k` counts only where
    `warp_valid`; the refined label's IGNORE pixels are shown magenta (dropped)."""
    warped = colourise(np.where(warp_valid, warped_k, IGNORE).astype(np.uint8))
    shown = colourise(refined)
    shown[refined == IGNORE] = DROPPED
    kept = 100 * float((refined != IGNORE).mean())
    fig, _ = image_panels([("frame t", rgb), ("teacher's pseudo-label of t", colourise(label_t)),
                           ("partner frame's, warped to t (no warp: black)", warped),
                           (f"refined ({kept:.0f}% kept, magenta dropped)", shown)], extra_height=0.6)
    fig.suptitle(title, fontsize=10)
    class_legend(fig, [label_t, np.where(warp_valid, warped_k, IGNORE)])
    return fig


def training_curves(runs: dict[str, list[dict]]):
    """One panel per quantity logged by the runs ({label: log.jsonl records}), one line per run."""
    panels = {"loss": [], "terms": [], "pseudo_weight": [], "miou": []}
    for records in runs.values():
        keys = {k for r in records for k in r}
        panels["terms"] += [k for k in sorted(keys) if k.startswith("loss/") and k not in panels["terms"]]
        panels["miou"] += [k for k in sorted(keys) if k.startswith("miou/") and k not in panels["miou"]]
        panels["pseudo_weight"] += [k for k in ("pseudo_weight", "refine_kept") if k in keys
                                    and k not in panels["pseudo_weight"]]
    panels["loss"] = ["loss"]
    shown = {name: keys for name, keys in panels.items() if keys}
    titles = {"loss": "total loss", "terms": "loss terms", "pseudo_weight": "pseudo-weight / refinement kept",
              "miou": "mIoU at each evaluation (%)"}
    fig = figure(4.0 * len(shown), 3.2)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, shown.items()):
        for label, records in runs.items():
            for key in keys:
                points = [(r["iteration"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                if points:
                    x, y = zip(*points)
                    style = "o-" if name == "miou" else "-"
                    ax.plot(x, y, style, lw=1, ms=3, label=f"{label}: {key}" if len(keys) > 1 else label)
        ax.set_title(titles[name], fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return fig


def _fitted(ax, values, axis: str = "y") -> None:
    """The value axis from a little under the smallest to a little over the largest value, within 0..100."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, 1.0)
    limits = (max(0.0, lo - pad), min(100.0, hi + pad))
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)


def miou_chart(labels: list[str], shifts: list[str], cell: dict):
    """Grouped bars: shifts as groups, methods as bars (mean of their runs; the spread as an error bar when
    several seeds), values printed on the bars."""
    fig = figure(max(4.0, 1.2 + 0.5 * len(labels) * len(shifts)), 3.6)
    ax = fig.subplots()
    width = 0.8 / max(len(labels), 1)
    values = []
    for m, label in enumerate(labels):
        xs, means, stds = [], [], []
        for g, shift in enumerate(shifts):
            if (label, shift) in cell:
                runs = cell[label, shift]
                xs.append(g + (m - (len(labels) - 1) / 2) * width)
                means.append(float(np.mean(runs)))
                stds.append(float(np.std(runs)) if len(runs) > 1 else 0.0)
        bars = ax.bar(xs, means, width * 0.95, yerr=stds if any(stds) else None, capsize=3, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        values += [m - s for m, s in zip(means, stds)] + [m + s for m, s in zip(means, stds)]
    ax.set_xticks(range(len(shifts)), shifts, fontsize=8)
    ax.set_ylabel("mIoU (%)", fontsize=8)
    _fitted(ax, values)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def per_class_chart(rows: dict[str, dict[str, float | None]]):
    """IoU per class ({method: {class: IoU %}}), horizontal grouped bars, classes in trainId order."""
    order = [c for c in load_classes().names if any(c in v for v in rows.values())]
    fig = figure(6.0, 0.8 + 0.28 * len(order) * max(1, len(rows)) ** 0.5)
    ax = fig.subplots()
    height = 0.8 / max(len(rows), 1)
    values = []
    for m, (label, ious) in enumerate(rows.items()):
        ys = [k + (m - (len(rows) - 1) / 2) * height for k, c in enumerate(order)]
        xs = [ious.get(c) if ious.get(c) is not None else np.nan for c in order]
        ax.barh(ys, xs, height * 0.95, label=label)
        values += xs
    ax.set_yticks(range(len(order)), order, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("IoU (%)", fontsize=8)
    _fitted(ax, [0.0] + values, axis="x")  # bars start at 0: the axis keeps it
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7)
    return fig
