"""`vdatrain eval` reports the temporal metrics for every flow pair from frame t that the store holds."""

import json

import pytest
import torch
from click.testing import CliRunner

from vdatrain.cli import cli
from vdatrain.models import build_model

RECIPE = """
name: tiny-eval
model: {{name: deeplabv2_r18}}
source: {{store: {store}}}
eval: {{store: {store}, classes: viper, window: [64, 128], stride: [32, 64]}}
"""


@pytest.fixture(scope="module")
def setup(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    store = tiny_store("cityscapes-seq", "val", offsets="-1,0,1", pairs="bwd:1,fwd:1,bwd:1@1")
    (root / "recipe.yaml").write_text(RECIPE.format(store=store))
    torch.manual_seed(0)
    torch.save({"model": build_model("deeplabv2_r18").state_dict(), "iteration": 0}, root / "ckpt.pt")
    return root


def test_temporal_metrics_per_pair_from_frame_t(setup):
    result = CliRunner().invoke(cli, ["eval", str(setup / "recipe.yaml"), "--ckpt", str(setup / "ckpt.pt"),
                                      "--pictures", "0", "--out", str(setup / "out")])
    assert result.exit_code == 0, result.output
    saved = json.loads((setup / "out/results.json").read_text())
    assert sorted(saved["temporal"]) == ["bwd_1", "fwd_1"]  # bwd_1_at_p1 starts at t+1: not a metric of t
    for by_protocol in saved["temporal"].values():
        assert set(by_protocol) == {"standard", "unifiedvideoda"}  # both class protocols, like mIoU
        for metrics in by_protocol.values():
            assert set(metrics) == {"predconsis_miou", "warped_miou", "warped_acc", "warped_acc_precision",
                                    "consistency_miou", "consistency_acc", "consistency_acc_precision", "retained"}
            assert 0 < metrics["retained"] <= 100 and 0 <= metrics["predconsis_miou"] <= 100
    assert "| bwd_1 | standard |" in result.output and "| bwd_1 | unifiedvideoda |" in result.output
    assert "Warped Acc (precision, the reference's)" in result.output


def test_no_temporal_skips_them(setup):
    result = CliRunner().invoke(cli, ["eval", str(setup / "recipe.yaml"), "--ckpt", str(setup / "ckpt.pt"),
                                      "--pictures", "0", "--no-temporal", "--out", str(setup / "plain")])
    assert result.exit_code == 0, result.output
    assert "temporal" not in json.loads((setup / "plain/results.json").read_text())


def test_batched_sliding_windows_give_what_one_window_at_a_time_gives(setup):
    """eval.window_batch windows per forward (here 4 + 4 + 1 of an image's 9) against 1: in evaluation mode nothing
    depends on the batch, so the predictions and the confusion are the same."""
    import numpy as np

    results = {}
    for n in (1, 4):
        out = setup / f"batch{n}"
        result = CliRunner().invoke(cli, ["eval", str(setup / "recipe.yaml"), "--ckpt", str(setup / "ckpt.pt"),
                                          "--pictures", "0", "--no-temporal", "--out", str(out),
                                          "--set", "eval.window=[32,64]",
                                          "--set", "eval.stride=[16,32]", "--set", f"eval.window_batch={n}"])
        assert result.exit_code == 0, result.output
        results[n] = (np.load(out / "confusion.npy"), json.loads((out / "results.json").read_text()))
    np.testing.assert_array_equal(results[4][0], results[1][0])
    assert results[4][1]["miou"] == results[1][1]["miou"] and results[1][0].sum() > 0


class _Crafted:
    """A pickle that would create a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["eval --ckpt", "model.init", "a resumed run folder"])
def test_a_crafted_checkpoint_never_runs_and_is_named(setup, tmp_path, where):
    marker = tmp_path / "marker"
    evil = tmp_path / ("run/checkpoint.pt" if where == "a resumed run folder" else "evil.pt")
    evil.parent.mkdir(exist_ok=True)
    torch.save({"model": build_model("deeplabv2_r18").state_dict(), "iteration": 0, "x": _Crafted(marker)}, evil)
    recipe = str(setup / "recipe.yaml")
    args = {"eval --ckpt": ["eval", recipe, "--ckpt", str(evil)],
            "model.init": ["fit", recipe, "--set", f"model.init={evil}", "--set", "train.iters=1",
                           "--set", "source.crop=[32,64]", "--run-dir", str(tmp_path / "fresh")],
            "a resumed run folder": ["fit", recipe, "--set", "train.iters=1", "--set", "source.crop=[32,64]",
                                     "--run-dir", str(evil.parent)]}[where]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert str(evil) in result.output and "refused" in result.output and "Traceback" not in result.output
    assert not marker.exists()
