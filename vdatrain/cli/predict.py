"""`vdatrain predict`: a trained model on videos, folders of frames or images, with a label-free consistency
score per input (`vdatrain.evaluation.footage`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vdatrain.cli.group import cli


def _output_names(inputs: list[Path]) -> list[str]:
    """One folder name per input: its stem, numbered when two inputs share one."""
    names, seen = [], {}
    for p in inputs:
        stem = p.stem or "input"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


@cli.command()
@click.argument("recipe")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="A checkpoint written by `vdatrain fit` (its run folder's checkpoint.pt), or a released "
                   "mmseg-format DAFormer/HRDA/MIC checkpoint.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: one folder per input (labels/, colour/, overlay.mp4, prediction.json).")
@click.option("--branch", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Which weights of a self-training checkpoint.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value (e.g. eval.window=[720,720]).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on a GPU, fp32 on the CPU.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Frame rate of the overlay video for a folder of frames (videos keep their own).")
@click.option("--flow", "flow_model", default="dis", show_default=True,
              help="Flow engine for the consistency score and two-frame models: dis (CPU) or any ptlflow model "
                   "(e.g. flowformer, on --device).")
@click.option("--flow-ckpt", default=None, help="The ptlflow model's weights file (never downloaded).")
def predict(recipe, inputs, ckpt, out, branch, overrides, device, precision, fps, flow_model, flow_ckpt):
    """Predict every frame of INPUTS (video files any PyAV build reads, folders of frames, images) with the
    recipe's model and evaluation windows: trainId and colour PNGs, an overlay video at the input's frame rate
    and size, and prediction.json with the share of each class and PL-PredConsis, the agreement of each frame's
    prediction with the previous one's warped through DIS flow (label-free; a model predicting one class
    everywhere scores 100, which the class shares reveal).

    Inputs whose prediction.json exists for the same checkpoint are skipped: a killed run resumes with the
    input it was on."""
    import torch

    from flowprep.flow.engines import make_engine
    from flowprep.progress import Progress
    from vdatrain.checkpoint import load_checkpoint_weights
    from vdatrain.evaluation.footage import open_footage, predict_footage
    from vdatrain.models import build_model
    from vdatrain.recipe import load_recipe

    r = load_recipe(recipe, list(overrides))
    footages = [open_footage(p, fps) for p in inputs]  # every input readable before any work
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    model = build_model(r.model.name, r.model.num_classes, r.model.hrda, r.model.accel, backbone=r.model.backbone)
    fmt = load_checkpoint_weights(model, ckpt, branch)
    click.echo(f"{ckpt}: {fmt} weights", err=True)
    model.to(dev).eval()
    engine = make_engine(flow_model, ckpt=flow_ckpt, device=str(dev))
    info = {"recipe": r.name, "checkpoint": str(Path(ckpt).resolve()), "branch": branch,
            "window": list(r.eval.window), "stride": list(r.eval.stride), "precision": "bf16" if bf16 else "fp32"}
    for footage, name in zip(footages, _output_names(list(inputs))):
        folder = out / name
        done = folder / "prediction.json"
        if done.is_file():
            try:
                previous = json.loads(done.read_text())
            except ValueError:
                previous = {}
            if all(previous.get(k) == info[k] for k in ("checkpoint", "branch", "window", "stride")):
                click.echo(f"{footage.path}: done before ({done}), skipped", err=True)
                continue
        with Progress(footage.count, f"predict {footage.path.name}", "frame") as progress:
            record = predict_footage(model, footage, folder, r.eval.window, r.eval.stride, dev, bf16,
                                     r.eval.window_batch, progress, info, engine)
        score = record["pl_predconsis_miou"]
        click.echo(f"{footage.path}: {record['frames']} frames -> {folder} "
                   f"(PL-PredConsis {'-' if score is None else f'{score:.1f}'}, "
                   f"{record['frames_per_second']} frames/s)")
