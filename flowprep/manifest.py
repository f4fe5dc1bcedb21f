"""Declarative dataset definitions from ``manifests/*.yaml``: layouts, label maps, class sets.

The manifests ship inside the package (`flowprep/manifests`, a link to the
repository's top-level `manifests/` in a checkout, copies in a wheel) and are found
through importlib.resources; ``$FLOWPREP_MANIFESTS`` points elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from flowprep.errors import FlowprepError

DATASETS = ("viper", "synthia-seq", "cityscapes-seq", "bdd")


def manifest_dir() -> Path:
    env = os.environ.get("FLOWPREP_MANIFESTS")
    path = Path(env) if env else Path(str(resources.files("flowprep").joinpath("manifests")))
    if not (path / "classes.yaml").is_file():
        raise FlowprepError(f"{path}: manifests not found (a broken install? FLOWPREP_MANIFESTS may point to a "
                            f"manifests/ folder)")
    return path


@dataclass(frozen=True)
class RawClass:
    id: int
    name: str
    train_id: int
    colour: tuple[int, int, int] | None = None  # (R, G, B) for colour-coded label files


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    native_resolution: tuple[int, int]  # (H, W) pixels
    frame_format: str
    layout: dict[str, str]
    default_offsets: tuple[int, ...]
    label_encoding: str
    evaluated: str
    classes: tuple[RawClass, ...] = ()
    fps: float | None = None
    labelled_every: int | None = None
    snippet_length: int | None = None
    labelled_index_in_snippet: int | None = None
    ego_vehicle_label_id: int | None = None
    reference_frame: int | None = None
    sample_id: str | None = None  # format pattern over layout fields, e.g. "{seq:03d}_{frame:05d}"
    labels_every_frame: bool = False  # labels exist for every frame, not only t
    ego_row: float | None = None  # rows from ego_row * H down show the ego vehicle (flow there is invalid)
    extra: dict = field(default_factory=dict)

    def raw_id(self, name: str) -> int:
        """Raw label value of the class called `name` (first match)."""
        for c in self.classes:
            if c.name == name:
                return c.id
        raise FlowprepError(f"manifest {self.name}: no class named {name!r}")

    def train_id_lut(self) -> np.ndarray:
        """(256,) uint8 or (65536,) uint8 table raw id -> trainId (255 for unlisted ids)."""
        size = 65536 if max((c.id for c in self.classes), default=0) > 255 or self.label_encoding.startswith("uint16") else 256
        lut = np.full(size, 255, dtype=np.uint8)
        for c in self.classes:
            lut[c.id] = c.train_id
        return lut


_FIELDS = {f for f in Manifest.__dataclass_fields__ if f not in ("classes", "extra")} | {"classes"}


def _parse_classes(name: str, rows) -> tuple[RawClass, ...]:
    out = []
    for row in rows:
        if len(row) == 4:
            out.append(RawClass(int(row[0]), str(row[1]), int(row[3]), tuple(int(v) for v in row[2])))
        elif len(row) == 3:
            out.append(RawClass(int(row[0]), str(row[1]), int(row[2])))
        else:
            raise FlowprepError(f"manifest {name}: class row {row!r} must be [id, name, trainId] or [id, name, [R,G,B], trainId]")
    return tuple(out)


@lru_cache(maxsize=None)
def load_manifest(name: str) -> Manifest:
    path = manifest_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FlowprepError(f"no manifest for dataset {name!r} ({path} missing; known: {', '.join(DATASETS)})")
    data = yaml.safe_load(path.read_text())
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise FlowprepError(f"{path}: unknown keys {unknown}")
    try:
        return Manifest(
            **{k: v for k, v in data.items() if k not in ("classes", "native_resolution", "default_offsets")},
            native_resolution=tuple(data["native_resolution"]),
            default_offsets=tuple(data["default_offsets"]),
            classes=_parse_classes(name, data.get("classes", [])),
        )
    except TypeError as e:
        raise FlowprepError(f"{path}: {e}") from None


@dataclass(frozen=True)
class ClassSet:
    names: tuple[str, ...]  # index = trainId
    palette: np.ndarray  # (C, 3) uint8 RGB
    evaluated: dict[str, tuple[int, ...]]  # set name -> trainIds
    ignore_label: int = 255


@lru_cache(maxsize=None)
def load_classes() -> ClassSet:
    data = yaml.safe_load((manifest_dir() / "classes.yaml").read_text())
    names = tuple(row[0] for row in data["classes"])
    palette = np.array([row[1] for row in data["classes"]], dtype=np.uint8)
    evaluated = {k: tuple(names.index(n) for n in v) for k, v in data["evaluated"].items()}
    return ClassSet(names, palette, evaluated, int(data["ignore_label"]))
