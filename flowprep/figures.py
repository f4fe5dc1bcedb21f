"""Figures a person reads, drawn with matplotlib: panels at a readable size, class legends, the flow colour key.

No pyplot (no global state, no display): a `Figure` with the Agg canvas, saved by `save`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowprep.manifest import load_classes
from flowprep.viz import colourise, flow_scale, flow_to_rgb, wheel_key

PANEL_INCHES = 4.0  # the width of one image panel; at 150 dpi a panel is 600 px whatever the image's size
DPI = 150


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> Path:
    """Write `fig` as an image; OSError naming the file when that fails (exit 1 under the CLIs' policy)."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=DPI)
    except (OSError, ValueError) as e:
        raise OSError(f"{path}: the figure could not be written ({e})") from None
    return path


def image_panels(images: list[tuple[str, np.ndarray]], extra_height: float = 0.0, zoom: float = 1.0):
    """A row of image panels, each PANEL_INCHES x `zoom` wide, titled; returns (fig, axes)."""
    h, w = images[0][1].shape[:2]
    width = PANEL_INCHES * zoom
    fig = figure(width * len(images), width * h / w + 0.5 + extra_height)
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (title, img) in zip(axes, images):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return fig, axes


def class_legend(fig, ids, where: str = "outside lower center") -> None:
    """A legend of the classes among `ids` (trainIds; 255 = ignore shown black), in the Cityscapes palette."""
    from matplotlib.patches import Patch

    classes = load_classes()
    present = sorted(int(i) for i in np.unique(np.concatenate([np.asarray(x).ravel() for x in ids])))
    handles = [Patch(facecolor=np.array(classes.palette[i]) / 255, edgecolor="0.5", label=classes.names[i])
               for i in present if i < len(classes.names)]
    if 255 in present:
        handles.append(Patch(facecolor="black", label="ignore"))
    if handles:
        fig.legend(handles=handles, loc=where, ncols=min(len(handles), 10), fontsize=7, frameon=False)


def flow_key(ax, scale: float) -> None:
    """The colour wheel as an inset of `ax`, with the length (pixels) its rim stands for."""
    inset = ax.inset_axes([0.78, 0.02, 0.2, 0.2 * ax.bbox.width / max(ax.bbox.height, 1)])
    inset.imshow(wheel_key(101))
    inset.set_axis_off()
    inset.set_title(f"rim {scale:.3g} px", fontsize=6, pad=1)


def flow_figure(frame: np.ndarray, flow: np.ndarray, valid: np.ndarray, title: str, zoom: float = 1.0):
    """frame | flow in the colour wheel (invalid black), with its key and scale | validity."""
    scale = flow_scale(flow, valid)
    fig, axes = image_panels([("source frame", frame), (title, flow_to_rgb(flow, valid, scale)),
                              (f"validity: white valid ({100 * valid.mean():.0f}%), black not\n(leaves the frame, fails the "
                               f"forward-backward check, or ego vehicle)", np.where(valid[..., None], 255, 0).astype(np.uint8)
                               .repeat(3, -1))], zoom=zoom)
    flow_key(axes[1], scale)
    return fig


def preview_figure(frame: np.ndarray, label: np.ndarray, flow: np.ndarray, valid: np.ndarray, title: str,
                   zoom: float = 1.0):
    """frame t | its label (legend) | exact flow in the colour wheel (occluded black, key)."""
    scale = flow_scale(flow, valid)
    fig, axes = image_panels([("frame t", frame), ("label of t", colourise(label)),
                              (title, flow_to_rgb(flow, valid, scale))], extra_height=0.6, zoom=zoom)
    flow_key(axes[2], scale)
    class_legend(fig, [label])
    return fig
