"""The run checkpoint `vdatrain fit` writes, and reading weights from it or from a released mmseg checkpoint.

Layout (one `torch.save`d dict, read back with weights_only): "model" (the student's state dict),
"optimizer", "method" (what the method keeps: the EMA teacher under "teacher", a part's own model
and optimiser), "iteration" (also the scheduler's and the data sampler's state), "recipe" (as
validated, to check a resume against), "processes". Written to a temporary file and renamed, by the
main process only; `iter_N.pt` hard links keep a history.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import torch

from vdatrain.models.mmseg import HRDA_ONLY, is_mmseg, load_state, map_mmseg_keys
from vdatrain.models.weights import WeightsError, safe_load
from vdatrain.recipe import OptimSpec, Recipe, RecipeError

CHECKPOINT = "checkpoint.pt"


def run_state(model, optimizer, method, iteration: int, recipe: Recipe, processes: int) -> dict:
    """What a checkpoint holds after `iteration` iterations (the layout above)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "method": method.state_dict(),
            "iteration": iteration, "recipe": asdict(recipe), "processes": processes}


class _RecordingFile(io.FileIO):
    """A file that keeps the OSError of a failed write: torch.save reports a full disk as a RuntimeError
    ("unexpected pos ..."), which names neither the file nor the cause."""

    error: OSError | None = None

    def write(self, data):
        try:
            return super().write(data)
        except OSError as e:
            self.error = e
            raise


def keep_history(run_dir: Path, iteration: int, keep: int) -> None:
    """iter_<iteration>.pt beside the rolling checkpoint (a hard link: no second copy on disk), the oldest
    removed beyond `keep`."""
    if keep <= 0:
        return
    kept = run_dir / f"iter_{iteration}.pt"
    kept.unlink(missing_ok=True)
    try:
        os.link(run_dir / CHECKPOINT, kept)
    except OSError:  # a file system without hard links
        shutil.copyfile(run_dir / CHECKPOINT, kept)
    history = sorted((p for p in run_dir.glob("iter_*.pt") if p.stem[5:].isdigit()), key=lambda p: int(p.stem[5:]))
    for old in history[:-keep]:
        old.unlink()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically: a kill or a full disk leaves the previous checkpoint intact and no
    temporary file behind; a failed write is an OSError naming the file (the CLI's exit 1)."""
    tmp = path.with_suffix(".tmp")
    f = None
    try:
        with _RecordingFile(tmp, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        cause = (f.error if f is not None else None) or (e if isinstance(e, OSError) else None)
        if cause is None:
            raise
        raise OSError(cause.errno, f"{path}: the checkpoint could not be written ({cause.strerror})") from None
    os.replace(tmp, path)


SCHEDULE = ["train.iters", *(f"optim.{f.name}" for f in fields(OptimSpec))]  # what a resume may change if allowed


def _value(recipe: dict, key: str):
    section, name = key.split(".")
    return recipe[section][name]


def load_checkpoint(path: Path, recipe: Recipe, model, optimizer, method, allow_schedule_change: bool = False) -> int:
    """Restore a run; returns the iteration it stopped at. The data must be the same for an exact resume; the
    schedule (train.iters, optim.*) too, unless `allow_schedule_change`: then the run continues on the new
    recipe's learning rates, weight decays and betas from the iteration it stopped at."""
    try:
        ckpt = safe_load(path)  # weights_only: a checkpoint swapped into the run folder cannot run code
        was, now = ckpt["recipe"], asdict(recipe)
        model_state, optim_state, method_state, iteration = (ckpt[k] for k in ("model", "optimizer", "method",
                                                                                "iteration"))
        for key in ("train.seed", "train.batch_size", *SCHEDULE):
            _value(was, key)
    except (KeyError, TypeError) as e:
        raise RecipeError(f"{path}: not a checkpoint of `vdatrain fit` (no {e}); use another --run-dir") from None
    from vdatrain.models.weights import check_keys

    check_keys(model_state, model.state_dict(), f"{path}: the run's model does not fit the recipe's "
                                                f"{recipe.model.name} (another model in this run folder?)")
    for key in ("train.seed", "train.batch_size"):
        if _value(was, key) != _value(now, key):
            raise RecipeError(f"{key}: {_value(now, key)!r} differs from {_value(was, key)!r} of the run being "
                              f"resumed in {path.parent}; use another --run-dir")
    changed = [key for key in SCHEDULE if _value(was, key) != _value(now, key)]
    if changed and not allow_schedule_change:
        key = changed[0]
        raise RecipeError(f"{key}: {_value(now, key)!r} differs from {_value(was, key)!r} of the run being resumed "
                          f"in {path.parent}; resume with the run's value, use another --run-dir, or pass "
                          f"--allow-schedule-change to continue on the new schedule")
    model.load_state_dict(model_state)
    fresh = [{k: g[k] for k in ("base_lr", "lr", "weight_decay", "betas")} for g in optimizer.param_groups]
    optimizer.load_state_dict(optim_state)
    if changed:  # the checkpoint's groups carry the old rates: take the new recipe's
        for group, new in zip(optimizer.param_groups, fresh):
            group.update(new)
    method.load_state_dict(method_state)
    return iteration


def load_checkpoint_weights(model: torch.nn.Module, path, branch: str = "student", may_lack: tuple = (),
                            may_drop: tuple = ()) -> str:
    """Load a `vdatrain fit` checkpoint or a released mmseg checkpoint into `model`; returns the format.

    Keys under the prefixes in `may_lack` may be absent (e.g. "attention." when a single-scale model
    initialises an HRDA one); they keep their initialisation. Checkpoint keys under `may_drop` that
    the model does not have are left out (an HRDA checkpoint initialising a single-scale model)."""
    path = Path(path)
    ckpt = safe_load(path)  # never unpickles code: tensors, plain containers, numpy values
    if isinstance(ckpt, dict) and "model" in ckpt and "iteration" in ckpt:
        if branch == "teacher":
            if "teacher" not in ckpt.get("method", {}):
                raise WeightsError(f"{path}: this run has no teacher (not a self-training run)")
            state, fmt = ckpt["method"]["teacher"], "vdatrain (teacher)"
        else:
            state, fmt = ckpt["model"], "vdatrain"
    else:
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict) or not is_mmseg(state):
            raise WeightsError(f"{path}: neither a vdatrain checkpoint nor an mmseg segmentor state dict")
        try:
            state, fmt = map_mmseg_keys(state, branch), f"mmseg ({branch})"
        except WeightsError as e:
            raise WeightsError(f"{path}: {e}") from None
    load_state(model, state, f"{path} ({fmt}) does not fit the recipe's model", may_lack, may_drop)
    return fmt


def init_weights(model: torch.nn.Module, path) -> str:
    """A recipe's `model.init`: whole-model weights to start training from (e.g. a source-only run's checkpoint).
    A two-frame model's single-frame part takes them (its fusion starts as the identity); between HRDA and
    single-scale models the attention head starts fresh or is left out."""
    return load_checkpoint_weights(getattr(model, "single_frame", model), path, may_lack=HRDA_ONLY, may_drop=HRDA_ONLY)
