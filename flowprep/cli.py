"""`flowprep` command line. Heavy imports (zarr, torch, ptlflow) happen inside commands.

Exit status (flowprep.exits, shared with vdatrain): 0 success; 1 the command ran and found a
problem (e.g. `verify` found corrupt chunks) or the environment failed it (permission, disk full);
2 bad arguments or bad input. Either failure is one line naming the file or key.
"""

from __future__ import annotations

import json
import shlex
import sys

import click

from flowprep import __version__
from flowprep.errors import FlowprepError
from flowprep.exits import invoke_guarded


class _Group(click.Group):
    """FlowprepError: one line, exit 2; an environment failure (OSError): one line, exit 1 (flowprep.exits)."""

    def invoke(self, ctx):
        return invoke_guarded(self, ctx, (FlowprepError,))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowprep")
def cli():
    """Build Video-DAS datasets: raw layouts -> zarr stores of frames, labels and optical flow.

    A store is one zarr v3 group per dataset split, readable by any zarr v3
    reader and memory-mapped zero-copy by vdatrain. See docs/store.md.
    """


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON description instead of text.")
def inspect(store, as_json):
    """Describe STORE: arrays, shapes, dtypes, sizes on disk, complete samples, attributes."""
    from flowprep.store.inspect import describe_store, format_description

    d = describe_store(store)
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=str))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only problems and the summary line.")
def verify(store, quiet):
    """Recompute the checksum of every chunk of every complete sample in STORE.

    Exits 1 and names each missing, truncated or corrupt chunk file and its
    sample; exits 0 when every complete sample checks out. Incomplete samples
    (never finished writing) are counted, not reported as corrupt.
    """
    from flowprep.store.verify import verify_store

    report = verify_store(store, progress=not quiet and sys.stderr.isatty())
    for problem in report.problems:
        click.echo(f"CORRUPT {problem}", err=True)
    parts = ", ".join(f"{part} {c}/{report.total}" for part, c in report.complete.items())
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
    click.echo(f"{status}: {report.chunks} chunks, {report.nbytes / 1e6:.1f} MB checked; complete samples: {parts}")
    sys.exit(0 if report.ok else 1)


def _offsets(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        offsets = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers like -2,-1,0") from None
    if 0 not in offsets:
        raise click.BadParameter("must include 0, the labelled frame t")
    return offsets


@cli.command()
@click.argument("dataset", type=click.Choice(["viper", "synthia-seq", "cityscapes-seq"]))
@click.option("--root", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="The dataset's top folder as downloaded (e.g. the folder holding train/ and val/ for VIPER, "
                   "leftImg8bit_sequence/ and gtFine/ for Cityscapes, SYNTHIA-SEQS-04-DAWN/ for Synthia).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="Which split to ingest (Synthia-Seq has one sequence; the name is recorded).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Store to write (a .zarr folder); re-running the same command resumes it.")
@click.option("--offsets", callback=_offsets, default=None,
              help="Frames to store relative to the labelled frame t, e.g. -2,-1,0 (default: the manifest's).")
@click.option("--split-file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Only these samples; lines like aachen/aachen_000000_000019, 001/001_00010 or 000123.")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True, help="Processes.")
def ingest(dataset, root, split, out, offsets, split_file, workers):
    """Turn a raw VIPER, Synthia-Seq or Cityscapes-Seq layout into a store.

    One sample per labelled frame t: the frames at the offsets, the label of t
    mapped to Cityscapes trainIds (and the labels of the other frames where
    the dataset labels every frame), and class pixel counts. Samples with a
    missing or unreadable file are excluded and reported, never filled in.
    Exits 0 when at least one sample is in the store, 2 when none or on bad
    arguments.
    """
    from flowprep.ingest.frames import plan_frames
    from flowprep.ingest.runner import format_summary, run_plan
    from flowprep.manifest import load_manifest

    offsets = offsets or list(load_manifest(dataset).default_offsets)
    plan = plan_frames(dataset, root, split, offsets, split_file)
    result = run_plan(plan, out, stage=f"ingest {dataset}", workers=workers, progress=sys.stderr.isatty())
    click.echo(format_summary(result))
    if result.complete == 0:
        raise FlowprepError(f"{out}: no sample could be written (see the reasons above)")


def _search(ctx, param, value: str):
    try:
        lo, hi = (int(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not FROM:TO (frame numbers, e.g. 280:330)") from None
    if not 0 <= lo <= hi:
        raise click.BadParameter(f"{value!r}: need 0 <= FROM <= TO")
    return lo, hi


@cli.command("build-bddvid")
@click.option("--bdd10k", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="BDD10k: the folder holding bdd100k/images/10k and bdd100k/labels/sem_seg/masks "
                   "(or the older bdd100k/seg/), or that bdd100k folder itself.")
@click.option("--bdd100k", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="BDD100K videos: searched recursively for {id}.mov (numbered sub-folders are fine).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Store to write; re-running the same command resumes it.")
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True,
              help="BDDVid split to build. Without --split-file: crc32(id) % 8 == 0 -> val, else train.")
@click.option("--split-file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Ids to use, lines like 53f06672-e942bc38_307 (the reference's) or bare ids.")
@click.option("--offsets", callback=_offsets, default="-4,-2,0", show_default=True,
              help="Video frames to store relative to the matched frame.")
@click.option("--search", callback=_search, default="280:330", show_default=True,
              help="Video frames (0-based decode count) searched for the BDD10k image.")
@click.option("--max-error", type=float, default=12.0, show_default=True,
              help="Accept a match only below this mean absolute grey-level difference (full resolution).")
@click.option("--min-contrast", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="The best frame must stand out from its window: its quarter-resolution score at most "
                   "(1 - this) x the window's median (waived under 4 grey levels, a car standing still).")
@click.option("--from-splits", default="train", show_default=True,
              help="BDD10k label splits to take ids from (comma-separated; the paper used train only).")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True, help="Processes.")
def build_bddvid(bdd10k, bdd100k, out, split, split_file, offsets, search, max_error, min_contrast, from_splits,
                 workers):
    """Build BDDVid: match each labelled BDD10k image to a frame of its BDD100K video.

    Seeks to the search window instead of decoding from the start, checks
    orientation against the BDD10k image, and stores the video frames at the
    offsets around the matched frame (for training) beside the original BDD10k
    image (for evaluation; the labels match it exactly) and the match record.
    Ids without a video, with an unreadable video or one that ends before the
    search window does, with no frame under --max-error or none that stands out
    (--min-contrast), and labelled images missing from the chosen splits'
    images are excluded and reported. Exits 0 when at least one
    sample is in the store, 2 when none or on bad arguments.
    """
    from flowprep.ingest.bddvid import plan_bddvid
    from flowprep.ingest.runner import format_summary, run_plan

    splits = tuple(s.strip() for s in from_splits.split(",") if s.strip())
    plan = plan_bddvid(bdd10k, bdd100k, split, offsets, split_file=split_file, search=search, max_error=max_error,
                       min_contrast=min_contrast, from_splits=splits)
    result = run_plan(plan, out, stage="build-bddvid", workers=workers, progress=sys.stderr.isatty())
    click.echo(format_summary(result))
    if result.complete == 0:
        raise FlowprepError(f"{out}: no sample could be written (see the reasons above)")


def _tile(ctx, param, value):
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HxW (e.g. 432x960)") from None
    return h, w


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--model", default="dis", show_default=True,
              help="dis, dis-fast, dis-ultrafast (OpenCV, CPU, no weights), flowformer, flowformer++, or any other "
                   "ptlflow model name.")
@click.option("--ckpt", default=None, help="ptlflow models: a local checkpoint file, or a checkpoint name (things, "
                                           "sintel, kitti, chairs) already placed in $TORCH_HOME/hub/checkpoints.")
@click.option("--random-weights", is_flag=True, help="Untrained ptlflow model (for tests; flows are meaningless).")
@click.option("--pairs", default=None, help="Comma-separated: bwd:K (t -> t-K), fwd:K (t -> t+K), @S for another "
                                            "start frame (bwd:1@-1 is t-1 -> t-2). Default: t -> t-k and t-k -> t-2k.")
@click.option("--gpus", type=click.IntRange(0, 64), default=0, show_default=True,
              help="One worker process per GPU (0: run on the CPU).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="CPU worker processes.")
@click.option("--shard", default="0/1", show_default=True,
              help="I/N: this process computes the items j with j % N == I; auto: I and N from the scheduler "
                   "(torchrun's RANK/WORLD_SIZE, a SLURM array task and srun task), logged at the start.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="ptlflow models: autocast precision (fp16 needs a GPU).")
@click.option("--tile", callback=_tile, default=None,
              help="ptlflow models: tile size HxW for large frames (e.g. 432x960, FlowFormer's training size).")
@click.option("--overlap", type=click.IntRange(0, 512), default=64, show_default=True, help="Tile overlap, pixels.")
@click.option("--batch", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Pairs per engine call (their tiles are batched together).")
@click.option("--no-consistency", is_flag=True,
              help="Skip the reverse flow and the forward-backward occlusion check (half the compute).")
def flow(store, model, ckpt, random_weights, pairs, gpus, workers, shard, precision, tile, overlap, batch,
         no_consistency):
    """Compute optical flow between the frames of every sample of STORE, with validity masks.

    Written into the store as flows/<pair> (1/32 px fixed point) and
    flow_valid/<pair>. Resumable: pairs already complete are skipped. Validity:
    target in frame, forward-backward consistent, off the ego vehicle.
    """
    import os

    from flowprep.flow.job import EngineSpec, parse_pairs, parse_shard, run_flow, shard_from_environment

    spec = EngineSpec(model, ckpt, random_weights, precision, tile, overlap)
    if shard.strip() == "auto":
        i, n, where = shard_from_environment(os.environ)
        click.echo(f"shard {i}/{n} ({where})", err=True)
    summary = run_flow(store, spec, parse_pairs(pairs) if pairs else None, shard=parse_shard(shard), gpus=gpus,
                       workers=workers, batch=batch, consistency=not no_consistency, progress=sys.stderr.isatty())
    click.echo(f"{store}: pairs {', '.join(summary['pairs'])}; {summary['items']} flows computed now "
               f"(shard {summary['shard'][0]}/{summary['shard'][1]})")


@cli.command("flow-import")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--pairs", "pair_spec", required=True, help="The pair the files hold, e.g. bwd:1 (t -> t-1).")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="Folder of KITTI 16-bit flow PNGs.")
@click.option("--pattern", default="{sample_id}.png", show_default=True,
              help="File name of a sample's flow, relative to --dir ({sample_id} is replaced).")
@click.option("--rescale", is_flag=True, help="Resize flows of another resolution to the store's, scaling vectors.")
def flow_import(store, pair_spec, directory, pattern, rescale):
    """Import flows published as KITTI 16-bit PNGs (the reference's format) into STORE.

    Samples without a file are reported and left incomplete; a size mismatch is
    an error unless --rescale.
    """
    from pathlib import Path

    from tqdm import tqdm

    from flowprep.flow.formats import read_kitti, resize_flow
    from flowprep.flow.job import parse_pairs
    from flowprep.store import StoreReader, StoreWriter, add_flow

    pairs = parse_pairs(pair_spec)
    if len(pairs) != 1:
        raise FlowprepError("--pairs: import one pair at a time")
    name = add_flow(store, *pairs[0], provenance={"stage": "flow-import", "command": shlex.join(sys.argv),
                                                   "source": str(Path(directory).resolve())})
    reader, writer = StoreReader(store), StoreWriter(store)
    h, w = reader.resolution
    missing = []
    for i, sid in enumerate(tqdm(reader.sample_ids, desc="flow-import", unit="flow", disable=not sys.stderr.isatty())):
        path = Path(directory) / pattern.format(sample_id=sid)
        if not path.is_file():
            missing.append(sid)
            continue
        flow, valid = read_kitti(path)
        if flow.shape[:2] != (h, w):
            if not rescale:
                raise FlowprepError(f"{path}: {flow.shape[1]}x{flow.shape[0]}, the store is {w}x{h} (use --rescale)")
            flow, valid = resize_flow(flow, valid, h, w)
        writer.write_flow(i, name, flow, valid)
    click.echo(f"{store}: imported {len(reader.sample_ids) - len(missing)} flows into {name}; "
               f"{len(missing)} samples without a file{': ' + ', '.join(missing[:5]) if missing else ''}")


@cli.command("flow-export")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--pair", required=True, help="Stored pair name, e.g. bwd_1.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Folder to write into.")
@click.option("--format", "fmt", type=click.Choice(["kitti", "flo"]), default="kitti", show_default=True,
              help="kitti: 16-bit PNG with validity in blue (+-512 px); flo: Middlebury float32, plus a "
                   "{sample_id}_valid.png mask.")
def flow_export(store, pair, out, fmt):
    """Write a stored flow pair as one file per sample ({sample_id}.png or .flo)."""
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from flowprep.flow.formats import write_flo, write_kitti
    from flowprep.store import StoreReader
    from flowprep.viz import write_picture

    r = StoreReader(store)
    if pair not in r.flow_pairs:
        raise FlowprepError(f"{store}: no flow pair {pair!r} (have {sorted(r.flow_pairs)})")
    Path(out).mkdir(parents=True, exist_ok=True)
    done = r.complete(f"flow_{pair}")
    for i in tqdm(np.flatnonzero(done), desc="flow-export", unit="flow", disable=not sys.stderr.isatty()):
        sid, flow, valid = r.sample_ids[i], r.flow(i, pair), r.flow_valid(i, pair)
        if fmt == "kitti":
            write_kitti(Path(out) / f"{sid}.png", flow, valid)
        else:
            write_flo(Path(out) / f"{sid}.flo", flow)
            write_picture(Path(out) / f"{sid}_valid.png", valid.astype(np.uint8) * 255)
    click.echo(f"{out}: {int(done.sum())} {fmt} files ({len(done) - int(done.sum())} samples have no such flow)")


@cli.command("flow-show")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--sample", "sample_id", required=True, help="Sample id, e.g. aachen_000000_000019.")
@click.option("--pair", default=None, help="Stored pair name (default: the first).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="PNG to write.")
@click.option("--zoom", type=click.IntRange(1, 8), default=1, show_default=True)
def flow_show(store, sample_id, pair, out, zoom):
    """Save a PNG of a sample's frame | flow (hue = direction, saturation = magnitude, invalid black) | validity."""
    from pathlib import Path

    from flowprep.flow.show import flow_picture
    from flowprep.viz import write_picture

    if Path(out).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
        raise FlowprepError(f"--out {out}: not an image file name (give a .png)")
    picture = flow_picture(store, sample_id, pair, zoom)
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # an unwritable place is an OSError: exit 1
    write_picture(out, picture)
    click.echo(out)


def _dataset_list(ctx, param, value: str) -> tuple[str, ...]:
    from flowprep.synth.generate import DATASETS

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise click.BadParameter(f"unknown dataset(s) {unknown} (choose from {','.join(DATASETS)})")
    return names


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to write the replicas into (created; existing files are overwritten).")
@click.option("--scale", type=click.Choice(["tiny", "demo", "full"]), default="tiny", show_default=True,
              help="tiny: 1/16 resolution, a few seconds, for tests. demo: 1/8, under a minute on 2 cores, big enough "
                   "to train on. full: the real resolutions (2048x1024, 1920x1080, 1280x760, 1280x720), a handful of "
                   "samples each, about 5 minutes: for checking paper recipes at their geometry (vdatrain check).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files.")
@click.option("--datasets", default="viper,synthia-seq,cityscapes-seq,bdd", show_default=True, callback=_dataset_list,
              help="Comma-separated replicas to write.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Rendering processes.")
def synth(out, scale, seed, datasets, workers):
    """Write small replicas of the raw VIPER, Synthia-Seq, Cityscapes-Seq and BDD layouts.

    Real file names, folders, image formats and label encodings, at reduced
    (tiny, demo) or the real (full) resolution, rendered from a procedural driving world; exact optical flow,
    occlusion masks and BDD's frame matches go to OUT/_truth/. See docs/synth.md.
    """
    from flowprep.synth.generate import generate

    summary = generate(out, scale=scale, seed=seed, datasets=datasets, workers=workers, progress=sys.stderr.isatty())
    for dataset, splits in summary["samples"].items():
        h, w = summary["resolution"][dataset]
        counts = ", ".join(f"{split} {len(ids)}" for split, ids in splits.items())
        click.echo(f"{dataset:<15} {w}x{h}  {summary['fps'][dataset]:g} fps  labelled samples: {counts}")
    click.echo(f"truth: {out}/_truth/")


@cli.command("synth-preview")
@click.argument("root", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Folder for the PNGs.")
@click.option("--zoom", type=click.IntRange(1, 8), default=3, show_default=True, help="Nearest-neighbour upscaling.")
def synth_preview(root, out, zoom):
    """Save one PNG per replica in ROOT: frame t | label (Cityscapes colours) | exact flow t -> t-k.

    Flow colours: hue = direction, saturation = magnitude; occluded pixels black.
    """
    from flowprep.synth.preview import preview

    for path in preview(root, out, zoom):
        click.echo(path)


def main():
    cli(prog_name="flowprep")
