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
from flowprep.store.layout import FLOW_CODECS


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
@click.option("--project", type=click.IntRange(1), default=None, metavar="N",
              help="Also print the store's size for N samples at its measured bytes per sample (e.g. 13367 for "
                   "VIPER train).")
def inspect(store, as_json, project):
    """Describe STORE: arrays, shapes, dtypes, codecs, sizes on disk and per sample, complete samples,
    attributes."""
    from flowprep.store.inspect import describe_store, format_description

    d = describe_store(store, project)
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=str))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only problems and the summary line.")
def verify(store, quiet):
    """Recompute the checksum of every chunk of every complete sample in STORE.

    Exits 1 and names each missing, truncated or corrupt chunk file and its
    sample, and when a sample was never finished (no checksum record: an ingest or
    flow job stopped before it; running the same command again finishes it); exits
    0 when every sample of every part is complete and checks out. The report and its
    summary go to standard output.
    """
    from flowprep.store.verify import verify_store

    report = verify_store(store, progress=not quiet)
    for problem in report.problems:
        click.echo(f"CORRUPT {problem}")
    for part, n in report.incomplete.items():
        click.echo(f"INCOMPLETE {part}: {n} of {report.total} samples never finished (no checksum record; run the "
                   f"command that writes them again)")
    parts = ", ".join(f"{part} {c}/{report.total}" for part, c in report.complete.items())
    status = "OK" if report.ok else (f"FAILED ({len(report.problems)} problems)" if report.problems else "INCOMPLETE")
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


_flow_codec_option = click.option(
    "--flow-codec", type=click.Choice(FLOW_CODECS), default="raw", show_default=True,
    help="Codec of the flows this store will hold: raw (memory-mapped, no decoding) or blosc-lz4 (lossless, 0.43x "
         "the bytes, ~3 ms per decoded megapixel on one core). Labels and validity masks are always zstd; frames "
         "always raw.")


def _with_flow_codec(plan, codec: str):
    """The plan, its store recording `codec` for the flows it will hold."""
    from dataclasses import replace

    return plan if plan.spec is None else replace(plan, spec=replace(plan.spec, flow_codec=codec))


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
@_flow_codec_option
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True, help="Processes.")
def ingest(dataset, root, split, out, offsets, split_file, flow_codec, workers):
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
    plan = _with_flow_codec(plan_frames(dataset, root, split, offsets, split_file), flow_codec)
    result = run_plan(plan, out, stage=f"ingest {dataset}", workers=workers, progress=True)
    click.echo(format_summary(result))
    if result.complete == 0:
        raise FlowprepError(f"{out}: no sample could be written (see the reasons above); a store this run created "
                            f"was removed")


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
@_flow_codec_option
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True, help="Processes.")
def build_bddvid(bdd10k, bdd100k, out, split, split_file, offsets, search, max_error, min_contrast, from_splits,
                 flow_codec, workers):
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
    plan = _with_flow_codec(plan_bddvid(bdd10k, bdd100k, split, offsets, split_file=split_file, search=search,
                                        max_error=max_error, min_contrast=min_contrast, from_splits=splits), flow_codec)
    result = run_plan(plan, out, stage="build-bddvid", workers=workers, progress=True)
    click.echo(format_summary(result))
    if result.complete == 0:
        raise FlowprepError(f"{out}: no sample could be written (see the reasons above); a store this run created "
                            f"was removed")


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
@click.option("--precision", type=click.Choice(["fp32", "tf32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="ptlflow models: fp32, fp32 with TF32 matrix multiplies (Ampere and newer GPUs), or autocast to "
                   "fp16 (GPUs only) or bf16.")
@click.option("--tile", callback=_tile, default=None,
              help="ptlflow models: tile size HxW for large frames (e.g. 432x960, FlowFormer's training size).")
@click.option("--overlap", type=click.IntRange(0, 512), default=64, show_default=True, help="Tile overlap, pixels.")
@click.option("--batch", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Pairs per engine call (their tiles are batched together).")
@click.option("--tile-batch", type=click.IntRange(1, 256), default=4, show_default=True,
              help="ptlflow models: tiles per forward (a GPU with room takes more; the flows are the same).")
@click.option("--no-consistency", is_flag=True,
              help="Skip the reverse flow and the forward-backward occlusion check (half the compute).")
@click.option("--codec", type=click.Choice(FLOW_CODECS), default=None,
              help="Codec of the flow arrays this run creates (default: the store's, chosen at ingest with "
                   "--flow-codec); pairs that exist keep theirs.")
def flow(store, model, ckpt, random_weights, pairs, gpus, workers, shard, precision, tile, overlap, batch,
         tile_batch, no_consistency, codec):
    """Compute optical flow between the frames of every sample of STORE, with validity masks.

    Written into the store as flows/<pair> (1/32 px fixed point) and
    flow_valid/<pair>. Resumable: pairs already complete are skipped. Validity:
    target in frame, forward-backward consistent, off the ego vehicle.
    """
    import os

    from flowprep.flow.job import EngineSpec, parse_pairs, parse_shard, run_flow, shard_from_environment

    spec = EngineSpec(model, ckpt, random_weights, precision, tile, overlap, tile_batch)
    if shard.strip() == "auto":
        i, n, where = shard_from_environment(os.environ)
        click.echo(f"shard {i}/{n} ({where})", err=True)
    summary = run_flow(store, spec, parse_pairs(pairs) if pairs else None, shard=parse_shard(shard), gpus=gpus,
                       workers=workers, batch=batch, consistency=not no_consistency, progress=True, codec=codec)
    click.echo(f"{store}: pairs {', '.join(summary['pairs'])}; {summary['items']} flows computed now "
               f"(shard {summary['shard'][0]}/{summary['shard'][1]})")


FLOW_FORMATS = ["kitti", "flo", "pfm", "flo5", "viper"]
PAIR_HELP = "e.g. bwd:1 or bwd_1 (t -> t-1), fwd:2, bwd:1@-1 or bwd_1_at_m1 (t-1 -> t-2)"


@cli.command("flow-import")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--pair", "--pairs", "pair_spec", required=True, help=f"The pair the files hold, {PAIR_HELP}.")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="Folder of flow files.")
@click.option("--pattern", default="{sample_id}.png", show_default=True,
              help="A sample's file relative to --dir. Placeholders: {sample_id}; the dataset's id fields ({city}, "
                   "{seq}); {t} the labelled frame's number; {frame} the number of the frame the pair starts from; "
                   "{offset}. The reference's: '{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png'.")
@click.option("--format", "fmt", type=click.Choice(FLOW_FORMATS), default=None,
              help="File format (default: from the pattern's extension; .npz is VIPER's ground truth).")
@click.option("--rescale", is_flag=True, help="Resize flows of another resolution to the store's, scaling vectors.")
def flow_import(store, pair_spec, directory, pattern, fmt, rescale):
    """Import flow files (KITTI PNG as the reference published them, .flo, .pfm, .flo5, VIPER .npz) into STORE.

    Samples without a file are reported and left incomplete; a size mismatch is an error unless --rescale;
    an unknown placeholder in --pattern is an error before anything is written.
    """
    from pathlib import Path

    from flowprep.flow.transfer import import_flows

    name, imported, missing = import_flows(
        store, pair_spec, directory, pattern, fmt, rescale, progress=True,
        provenance={"stage": "flow-import", "command": shlex.join(sys.argv), "source": str(Path(directory).resolve())})
    click.echo(f"{store}: imported {imported} flows into {name}; "
               f"{len(missing)} samples without a file{': ' + ', '.join(missing[:5]) if missing else ''}")
    from flowprep.store import StoreReader

    validity = StoreReader(store).attrs["provenance"][-1].get("validity", "")
    if validity.startswith("unknown"):
        click.echo(f"warning: {name}: validity unknown for files without a <name>_valid.png beside them (every "
                   f"finite vector taken as valid; recorded in the pair's provenance)", err=True)


@cli.command("flow-export")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--pair", required=True, help=f"Stored pair, {PAIR_HELP}.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Folder to write into.")
@click.option("--format", "fmt", type=click.Choice(FLOW_FORMATS), default="kitti", show_default=True,
              help="kitti: 16-bit PNG with validity in blue (+-512 px); flo, pfm, flo5, viper (.npz): float vectors "
                   "plus a <name>_valid.png mask.")
@click.option("--pattern", default="{sample_id}", show_default=True,
              help="File name without extension, relative to --out (placeholders as flow-import's).")
def flow_export(store, pair, out, fmt, pattern):
    """Write a stored flow pair as one file per sample."""
    from flowprep.flow.transfer import export_flows

    written, without = export_flows(store, pair, out, fmt, pattern, progress=True)
    click.echo(f"{out}: {written} {fmt} files ({without} samples have no such flow)")


@cli.command("flow-compare")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--pair", required=True, help=f"Stored pair to score, {PAIR_HELP}.")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True, path_type=str),
              help="Folder of reference flow files (e.g. VIPER's ground truth, train/flow).")
@click.option("--pattern", required=True,
              help="A sample's file relative to --dir, placeholders as flow-import's (VIPER: "
                   "'{seq:03d}/{seq:03d}_{frame:05d}.npz').")
@click.option("--format", "fmt", type=click.Choice(FLOW_FORMATS), default=None, help="Default: from the extension.")
def flow_compare(store, pair, directory, pattern, fmt):
    """Score a stored flow against reference flow files: mean end-point error (px) and outliers (Fl: error
    > 3 px and > 5% of the reference's length), over the pixels valid in both."""
    from flowprep.flow.transfer import compare_flows

    r = compare_flows(store, pair, directory, pattern, fmt, progress=True)
    click.echo(f"{store} {r['pair']}: EPE {r['epe']:.3f} px, Fl {r['outliers']:.2f}% over {r['pixels']} pixels of "
               f"{r['samples']} samples; {len(r['missing'])} without a reference file")


@cli.command("flow-show")
@click.argument("store", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--sample", "sample_id", required=True, help="Sample id, e.g. aachen_000000_000019.")
@click.option("--pair", default=None, help=f"Stored pair, {PAIR_HELP} (default: the first).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="PNG to write.")
@click.option("--zoom", type=click.FloatRange(0.5, 8), default=1.0, show_default=True,
              help="Panel size: each panel is 4 x ZOOM inches wide at 150 dpi (600 px at 1).")
def flow_show(store, sample_id, pair, out, zoom):
    """Save a picture of a sample's frame | flow in the standard colour wheel (hue = direction, saturation =
    length; invalid black) with the wheel as its key and the length its rim stands for | validity."""
    from pathlib import Path

    from flowprep.flow.show import flow_picture

    if Path(out).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
        raise FlowprepError(f"--out {out}: not an image file name (give a .png)")
    from flowprep.figures import save

    fig = flow_picture(store, sample_id, pair, zoom)
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # an unwritable place is an OSError: exit 1
    save(fig, out)
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
                   "samples each, a few minutes: for checking paper recipes at their geometry (vdatrain check).")
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

    summary = generate(out, scale=scale, seed=seed, datasets=datasets, workers=workers, progress=True)
    for dataset, splits in summary["samples"].items():
        h, w = summary["resolution"][dataset]
        counts = ", ".join(f"{split} {len(ids)}" for split, ids in splits.items())
        click.echo(f"{dataset:<15} {w}x{h}  {summary['fps'][dataset]:g} fps  labelled samples: {counts}")
    click.echo(f"truth: {out}/_truth/")


@cli.command("synth-preview")
@click.argument("root", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Folder for the PNGs.")
@click.option("--zoom", type=click.FloatRange(0.5, 8), default=1.0, show_default=True,
              help="Panel size: each panel is 4 x ZOOM inches wide at 150 dpi (600 px at 1).")
def synth_preview(root, out, zoom):
    """Save one PNG per replica in ROOT: frame t | label (Cityscapes colours) | exact flow t -> t-k.

    Flow colours: hue = direction, saturation = magnitude; occluded pixels black.
    """
    from flowprep.synth.preview import preview

    for path in preview(root, out, zoom):
        click.echo(path)


def main():
    cli(prog_name="flowprep")
