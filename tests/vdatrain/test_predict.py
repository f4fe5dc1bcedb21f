"""`vdatrain predict`: a trained model on videos, folders of frames and images, with PNGs, an overlay video, and a
label-free consistency score per input; a rerun skips what is done."""

import json

import av
import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vdatrain.cli import cli
from vdatrain.evaluation.footage import open_footage, predconsis_confusion
from vdatrain.metrics.miou import miou
from vdatrain.models import build_model

RECIPE = """
name: predict-test
model: {name: deeplabv2_r18, num_classes: 19}
source: {store: none.zarr, crop: [64, 64]}
eval: {store: none.zarr, classes: viper, window: [64, 64], stride: [32, 32]}
"""


def _frames(n: int, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """A bright square moving right over a gradient: something a flow can follow."""
    out = []
    for t in range(n):
        img = np.tile(np.linspace(0, 200, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
        img[20:40, 10 + 4 * t:30 + 4 * t] = (250, 40, 40)
        out.append(img)
    return out


def write_video(path, frames, fps=10, codec="libx264"):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decoded(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return frames, float(stream.average_rate)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    (root / "recipe.yaml").write_text(RECIPE)
    torch.manual_seed(0)
    torch.save({"model": build_model("deeplabv2_r18").state_dict(), "iteration": 0}, root / "ckpt.pt")
    write_video(root / "drive.mp4", _frames(6))
    (root / "frames").mkdir()
    for i, f in enumerate(_frames(3)):
        cv2.imwrite(str(root / "frames" / f"{i:04d}.png"), f[..., ::-1])
    cv2.imwrite(str(root / "still.jpg"), _frames(1)[0][..., ::-1])
    return root


def test_predict_writes_a_png_per_frame_an_overlay_like_the_input_and_a_record(setup):
    out = setup / "out"
    args = ["predict", str(setup / "recipe.yaml"), str(setup / "drive.mp4"), str(setup / "frames"),
            str(setup / "still.jpg"), "--ckpt", str(setup / "ckpt.pt"), "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    video = out / "drive"
    assert sorted(p.name for p in (video / "labels").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    label = cv2.imread(str(video / "labels" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (64, 96) and label.dtype == np.uint8 and label.max() < 19
    colour = cv2.imread(str(video / "colour" / "000000.png"))
    assert colour.shape == (64, 96, 3) and (video / "colour" / "legend.png").is_file()
    frames, fps = _decoded(video / "overlay.mp4")
    assert len(frames) == 6 and fps == 10 and frames[0].shape == (64, 96, 3)  # the input's count, rate and size
    record = json.loads((video / "prediction.json").read_text())
    assert record["frames"] == 6 and record["consistency_pairs"] == 5 and record["size"] == [64, 96]
    assert 0 <= record["pl_predconsis_miou"] <= 100
    assert sum(record["class_shares"].values()) == pytest.approx(100, abs=0.01)
    assert record["checkpoint"] == str((setup / "ckpt.pt").resolve()) and record["window"] == [64, 64]
    folder = json.loads((out / "frames" / "prediction.json").read_text())
    assert folder["frames"] == 3 and folder["fps"] == 10.0 and len(_decoded(out / "frames" / "overlay.mp4")[0]) == 3
    still = json.loads((out / "still" / "prediction.json").read_text())
    assert still["frames"] == 1 and still["pl_predconsis_miou"] is None and not (out / "still" / "overlay.mp4").exists()
    # a rerun skips every finished input and touches nothing
    before = (video / "labels" / "000003.png").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output.count("skipped") == 3, again.output
    assert (video / "labels" / "000003.png").stat().st_mtime_ns == before


def test_a_killed_run_redoes_only_the_unfinished_input(setup):
    out = setup / "resume"
    args = ["predict", str(setup / "recipe.yaml"), str(setup / "frames"), str(setup / "still.jpg"),
            "--ckpt", str(setup / "ckpt.pt"), "--out", str(out), "--device", "cpu"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (out / "still" / "prediction.json").unlink()  # as if killed while on the second input
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "frames: done before" in result.output.replace(str(setup) + "/", "")
    assert (out / "still" / "prediction.json").is_file()


def test_the_consistency_score_is_the_miou_of_t_against_t_minus_1_warped_on_valid_pixels():
    """Frame t-1's prediction moved one pixel right gives frame t's, except where t has a class t-1 lacked."""
    before = torch.tensor([[0, 1, 1, 2]] * 2)
    now = torch.tensor([[0, 0, 1, 1]] * 2)  # the content moved right by one pixel, column 0 is new
    now[1, 3] = 3  # one pixel disagrees
    flow = torch.zeros(2, 2, 4)
    flow[0] = -1.0  # t -> t-1: each pixel came from one pixel to its left
    valid = torch.ones(2, 4, dtype=torch.bool)
    valid[:, 0] = False  # its source lies outside frame t-1
    conf = predconsis_confusion(now, before, flow, valid, 4)
    # compared pixels: columns 1..3 of both rows, warped t-1 = [0, 1, 1] per row; t = [0, 1, 1] and [0, 1, 3]
    # class 0: IoU 2/2; class 1: TP 3, FP (warped 1, t 3) 1, FN 0 -> 3/4; class 3: TP 0, FN 1 -> 0
    assert miou(conf.numpy(), [0, 1, 2, 3]) == pytest.approx(100 * (1 + 0.75 + 0) / 3)


def test_unreadable_inputs_are_one_line_before_any_work(setup, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (tmp_path / "empty").mkdir()
    for bad, message in ((tmp_path / "broken.mp4", "broken.mp4: not a video PyAV can read"),
                         (tmp_path / "empty", "empty: no images"), (tmp_path / "nowhere.mp4", "no such file")):
        result = CliRunner().invoke(cli, ["predict", str(setup / "recipe.yaml"), str(setup / "still.jpg"), str(bad),
                                          "--ckpt", str(setup / "ckpt.pt"), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_two_frame_model_takes_its_partner_and_flow_from_the_previous_frames(setup, tmp_path):
    from vdatrain.recipe.schema import ACCELSpec

    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("num_classes: 19}", "num_classes: 19, accel: {pair: bwd_1}}")
                                          .replace("crop: [64, 64]}", "crop: [64, 64], offsets: [0, -1], flows: [bwd_1]}"))
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18", accel=ACCELSpec(pair="bwd_1"))
    with torch.no_grad():
        model.fusion.weight[:, 19:] = 0.5  # frame t-1's warped logits count
    torch.save({"model": model.state_dict(), "iteration": 0}, tmp_path / "ckpt.pt")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "recipe.yaml"), str(setup / "drive.mp4"), "--ckpt",
                                      str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "drive" / "prediction.json").read_text())
    assert record["frames"] == 6 and record["single_frame"] == [0]  # frame 0 has no partner yet


def test_open_footage_reads_the_count_and_rate_and_streams_the_frames(setup):
    f = open_footage(setup / "drive.mp4")
    assert (f.kind, f.count, f.fps, f.size) == ("video", 6, 10.0, (64, 96))  # the header names 6 frames
    frames = list(f.frames())
    assert len(frames) == 6 and frames[0].dtype == np.uint8 and frames[0].shape == (64, 96, 3)
