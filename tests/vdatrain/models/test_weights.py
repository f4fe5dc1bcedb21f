"""ImageNet weights load from the formats users have, with a readable report when they do not fit."""

import pytest
import torch
import torchvision

from vdatrain.models import build_model
from vdatrain.models.weights import WeightsError, load_backbone


def _randomised(state):
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def test_torchvision_resnet101_loads_into_the_plain_stem_model(tmp_path):
    tv = _randomised(torchvision.models.resnet101(weights=None).state_dict())  # includes fc.*
    torch.save(tv, tmp_path / "resnet101.pth")
    model = build_model("deeplabv2_r101_tv")
    assert load_backbone(model.backbone, tmp_path / "resnet101.pth") == "torchvision-resnet"
    assert torch.equal(model.backbone.conv1.weight, tv["conv1.weight"])
    assert torch.equal(model.backbone.layer4[2].bn3.running_var, tv["layer4.2.bn3.running_var"])


def test_mmcv_resnet_v1c_keys_load_into_the_deep_stem_model(tmp_path):
    state = _randomised(build_model("deeplabv2_r50").backbone.state_dict())
    documented = ["stem.0.weight", "stem.1.running_mean", "stem.3.weight", "stem.4.bias", "stem.6.weight",
                  "stem.7.weight", "layer1.0.conv1.weight", "layer1.0.bn3.weight", "layer1.0.downsample.0.weight",
                  "layer1.0.downsample.1.running_var", "layer4.2.conv3.weight"]
    assert set(documented) <= set(state)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "resnet50_v1c.pth")
    model = build_model("deeplabv2_r50")
    assert load_backbone(model.backbone, tmp_path / "resnet50_v1c.pth") == "mmcv-resnet-v1c"
    assert torch.equal(model.backbone.stem[6].weight, state["stem.6.weight"])


def test_segformer_mit_keys_load_and_the_classifier_is_dropped(tmp_path):
    state = _randomised(build_model("daformer_mitb0").backbone.state_dict())
    documented = ["patch_embed1.proj.weight", "patch_embed4.norm.bias", "block1.0.attn.q.weight",
                  "block1.0.attn.kv.weight", "block1.0.attn.proj.weight", "block1.0.attn.sr.weight",
                  "block1.0.attn.norm.weight", "block2.1.mlp.fc1.weight", "block2.1.mlp.dwconv.dwconv.weight",
                  "block4.1.mlp.fc2.bias", "norm1.weight", "norm4.bias"]
    assert set(documented) <= set(state)
    state["head.weight"] = torch.zeros(1000, 256)  # the ImageNet classifier
    torch.save(state, tmp_path / "mit_b0.pth")
    model = build_model("daformer_mitb0")
    assert load_backbone(model.backbone, tmp_path / "mit_b0.pth") == "segformer-mit"
    assert torch.equal(model.backbone.block2[1].mlp.dwconv.dwconv.weight, state["block2.1.mlp.dwconv.dwconv.weight"])


def test_a_checkpoint_that_does_not_fit_lists_missing_unexpected_and_misshaped_keys(tmp_path):
    state = build_model("deeplabv2_r18").backbone.state_dict()
    del state["layer1.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["stem.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as e:
        load_backbone(build_model("deeplabv2_r18").backbone, tmp_path / "bad.pth")
    msg = str(e.value)
    assert "bad.pth (mmcv-resnet-v1c keys) does not fit ResNet" in msg
    assert "missing 1: layer1.0.conv1.weight" in msg and "unexpected 1: layer9.0.conv1.weight" in msg
    assert "stem.0.weight (8, 3, 3, 3) vs (32, 3, 3, 3)" in msg


def test_wrong_family_and_missing_files_are_errors(tmp_path):
    torch.save(build_model("daformer_mitb0").backbone.state_dict(), tmp_path / "mit.pth")
    with pytest.raises(WeightsError, match="segformer-mit keys"):
        load_backbone(build_model("deeplabv2_r18").backbone, tmp_path / "mit.pth")
    with pytest.raises(WeightsError, match="weights file not found"):
        load_backbone(build_model("deeplabv2_r18").backbone, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_backbone(build_model("deeplabv2_r18").backbone, tmp_path / "junk.pth")
