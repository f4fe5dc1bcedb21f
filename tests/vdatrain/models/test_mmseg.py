"""Released mmseg-format HRDA/DAFormer checkpoints load into our models through a tested key map."""

import pytest
import torch

from vdatrain.models import build_model
from vdatrain.checkpoint import load_checkpoint_weights
from vdatrain.models.mmseg import map_mmseg_keys
from vdatrain.models.weights import WeightsError
from vdatrain.recipe import HRDASpec


def mmseg_name(ours: str, hrda: bool) -> str:
    """Our key -> the released checkpoint's, written from the documented mmseg layout."""
    parts = ours.split(".")
    if parts[0] == "head":
        parts = (["decode_head", "head"] if hrda else ["decode_head"]) + parts[1:]
    elif parts[0] == "attention":
        parts = ["decode_head", "scale_attention"] + parts[1:]
    if "aspp" in parts and parts[parts.index("aspp") + 2] in ("weight", "bias"):  # DeepLabV2 head convs
        i = parts.index("aspp")
        parts = parts[:i] + ["aspp_modules", parts[i + 1], "conv"] + parts[i + 2:]
    return ".".join(parts)


def _released(model, hrda: bool, salt: float = 0.0) -> dict:
    state = {}
    for k, v in model.state_dict().items():
        state["model." + mmseg_name(k, hrda)] = v.clone() if not v.is_floating_point() else v + salt
        state["ema_model." + mmseg_name(k, hrda)] = v.clone() if not v.is_floating_point() else v + 1.0
    state["imnet_model.backbone.stem.0.weight"] = torch.zeros(1)  # never needed
    return {"meta": {"iter": 40000}, "state_dict": state}


@pytest.mark.parametrize("name", ["deeplabv2_r18", "daformer_mitb0"])
def test_hrda_checkpoints_load_student_or_teacher(tmp_path, name):
    source = build_model(name, 19, HRDASpec())
    path = tmp_path / "hrda.pth"
    torch.save(_released(source, hrda=True), path)
    for branch, shift in (("student", 0.0), ("teacher", 1.0)):
        target = build_model(name, 19, HRDASpec())
        assert load_checkpoint_weights(target, path, branch) == f"mmseg ({branch})"
        for k, v in source.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(target.state_dict()[k], v + shift, msg=k)


def test_single_scale_checkpoints_map_decode_head_to_head():
    source = build_model("deeplabv2_r18", 19)
    state = _released(source, hrda=False)["state_dict"]
    mapped = map_mmseg_keys(state)
    assert "head.aspp.0.weight" in mapped and "decode_head.aspp_modules.0.conv.weight" not in mapped
    assert set(mapped) == set(source.state_dict())


def test_a_checkpoint_of_another_architecture_lists_the_keys(tmp_path):
    path = tmp_path / "dlv2.pth"
    torch.save(_released(build_model("deeplabv2_r18", 19), hrda=False), path)
    with pytest.raises(WeightsError, match=r"dlv2.pth \(mmseg \(student\)\) does not fit .*missing .*attention"):
        load_checkpoint_weights(build_model("deeplabv2_r18", 19, HRDASpec()), path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_checkpoint_weights(build_model("deeplabv2_r18", 19), tmp_path / "junk.pth")
