"""`vdatrain report` averages only runs that differ in the seed alone, names what sets other runs apart, counts
an evaluation once, and draws charts that cannot be misread."""

import json

from click.testing import CliRunner

from vdatrain import report as rep
from vdatrain.cli import cli

CONFIG = {"model.name": "deeplabv2_r101", "train.iters": 300, "source.store": "viper_train.zarr"}


def _result(folder, miou, seed, iters=300, label="Source only", predconsis=60.0):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "miou": {"standard": miou, "unifiedvideoda": miou},
        "per_class": {"standard": {"road": miou, "train": None}},
        "temporal": {"bwd_1": {"standard": {"predconsis_miou": predconsis}}},
        "run": {"label": label, "shift": "viper -> cityscapes-seq", "protocol": "standard", "seed": seed,
                "config": {**CONFIG, "train.iters": iters}}}))
    return folder


def test_runs_that_differ_beyond_the_seed_get_rows_of_their_own_named_by_the_difference(tmp_path):
    folders = [_result(tmp_path / "long", 19.7, 1), _result(tmp_path / "short1", 8.0, 1, iters=6),
               _result(tmp_path / "short2", 6.0, 2, iters=6)]
    result = CliRunner().invoke(cli, ["report", *map(str, folders)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| Source only")]
    assert rows[:2] == ["| Source only [train.iters=300] | 19.7 |", "| Source only [train.iters=6] | 7.0 ± 1.0 (n=2) |"]
    assert "Source only [train.iters=6], viper -> cityscapes-seq: seeds 1, 2" in result.output


def test_two_seeds_of_one_recipe_are_mean_and_std_and_the_same_evaluation_counts_once(tmp_path):
    a, b = _result(tmp_path / "seed1", 20.0, 1, predconsis=60.0), _result(tmp_path / "seed2", 22.0, 2, predconsis=70.0)
    result = CliRunner().invoke(cli, ["report", str(a), str(b), str(a), str(tmp_path / "seed1" / ".")])
    assert result.exit_code == 0, result.output
    assert "| Source only | 21.0 ± 1.0 (n=2) |" in result.output  # seed1 passed three times: still n=2
    assert "| Source only | viper -> cityscapes-seq | 65.0 ± 5.0 (n=2) |" in result.output  # one PredConsis row


def test_the_charts_start_at_zero_name_protocol_and_seeds_and_mark_classes_without_ground_truth(tmp_path):
    rows = [rep.load(_result(tmp_path / f"s{s}", 19.7 + s, s)) for s in (1, 2)] + \
        [rep.load(_result(tmp_path / "other", 28.7, 1, label="HRDA+MIC"))]
    written = rep.write(rows, tmp_path / "out")
    assert {p.name for p in written} >= {"miou.png", "per_class.png", "table.md"}
    from vdatrain import figures

    fig = figures.miou_chart(*rep.tables(rows), title="mIoU, standard protocol; seeds 1, 2")
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and "seeds 1, 2" in ax.get_title()
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the axes, off the bars
    bars = figures.per_class_chart({"HRDA+MIC": {"road": 50.0, "train": None}})
    texts = [t.get_text() for t in bars.axes[0].texts]
    assert "no ground truth" in texts and bars.axes[0].get_xlim()[0] == 0
