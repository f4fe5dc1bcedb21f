"""Figures of training and evaluation, drawn with matplotlib (`flowprep.figures` for panels and legends).

- prediction: image | prediction | ground truth | error map, with the classes' legend;
- refinement: frame t | the teacher's pseudo-label | the partner frame's, warped to t | the refined label with
  the pixels refinement dropped marked;
- training curves from `log.jsonl`: loss terms, pseudo-weight and refinement share, mIoU at each evaluation;
- mIoU per method and shift, and IoU per class per method: bars from zero, legends outside the data, seed
  spreads as error bars, classes without ground truth marked as such (not drawn as an IoU of 0).
"""

from __future__ import annotations

import numpy as np

from flowprep.figures import class_legend, figure, image_panels
from flowprep.manifest import load_classes
from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from flowprep.viz import colourise

DROPPED = np.array([255, 0, 255], np.uint8)  # magenta: pixels a refinement leaves out


def error_map(pred: np.ndarray, label: np.ndarray, scored: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3): correct white, wrong red, pixels not scored (unlabelled, or `scored` False) black."""
    scored = label != IGNORE if scored is None else scored
    out = np.zeros((*label.shape, 3), np.uint8)
    out[scored & (pred == label)] = 255
    out[scored & (pred != label)] = (220, 30, 30)
    return out


def prediction_figure(rgb: np.ndarray, pred: np.ndarray, label: np.ndarray, title: str,
                      evaluated: list[int] | None = None):
    """Four panels and a legend; `pred`, `label` (H, W) trainIds. The error map and the pixel accuracy count the
    pixels labelled with an `evaluated` class (default: any labelled pixel), as the standard protocol does."""
    labelled = label != IGNORE if evaluated is None else np.isin(label, evaluated)
    acc = 100 * float((pred == label)[labelled].mean()) if labelled.any() else float("nan")
    fig, _ = image_panels([("image", rgb), ("prediction", colourise(pred)), ("ground truth", colourise(label)),
                           (f"errors: red wrong, white right, black not scored\n{acc:.1f}% pixel accuracy",
                            error_map(pred, label, labelled))],
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
    colours = {label: f"C{k % 10}" for k, label in enumerate(runs)}  # one colour per run in every panel
    styles = ["-", "--", ":", "-."]
    fig = figure(4.0 * len(shown), 3.6)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, shown.items()):
        for label, records in runs.items():
            for k, key in enumerate(keys):  # a run's terms: its colour, one line style each
                points = [(r["iteration"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                if points:
                    x, y = zip(*points)
                    ax.plot(x, y, ("o" if name == "miou" else "") + styles[k % len(styles)], lw=1, ms=3,
                            color=colours[label], label=f"{label}: {key}" if len(keys) > 1 else label)
        ax.set_title(titles[name], fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    return fig


def _from_zero(ax, values, axis: str = "y") -> None:
    """The value axis from 0 to a little over the largest value (at most 100): bars compare by their length."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    hi = max(values, default=1.0)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0.0, min(100.0, hi * 1.15 + 1.0))


def miou_chart(labels: list[str], shifts: list[str], cell: dict, title: str = ""):
    """Grouped bars from zero: shifts as groups, methods as bars (mean of their runs; the spread as an error bar
    when several seeds), values printed on the bars, the legend below the axes; `title` names the protocol and
    the seeds."""
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
    _from_zero(ax, values)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(labels), 3), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def per_class_chart(rows: dict[str, dict[str, float | None]]):
    """IoU per class ({method: {class: IoU %}}), horizontal grouped bars from zero, classes in trainId order; a
    class without ground truth (None: absent from labels and predictions) is written "no ground truth", not
    drawn as 0."""
    order = [c for c in load_classes().names if any(c in v for v in rows.values())]
    fig = figure(6.0, 0.8 + 0.28 * len(order) * max(1, len(rows)) ** 0.5)
    ax = fig.subplots()
    height = 0.8 / max(len(rows), 1)
    values = []
    for m, (label, ious) in enumerate(rows.items()):
        ys = [k + (m - (len(rows) - 1) / 2) * height for k, c in enumerate(order)]
        xs = [ious.get(c) if ious.get(c) is not None else np.nan for c in order]
        ax.barh(ys, xs, height * 0.95, label=label)
        for y, x in zip(ys, xs):
            if np.isnan(x):
                ax.text(0.5, y, "no ground truth", va="center", fontsize=5, color="0.45", style="italic")
        values += xs
    ax.set_yticks(range(len(order)), order, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("IoU (%)", fontsize=8)
    _from_zero(ax, values, axis="x")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(rows), 3), frameon=False)
    return fig
