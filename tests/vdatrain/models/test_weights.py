"""ImageNet weights load from the formats users have, with a readable report when they do not fit."""

import re

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


def _hf_mit(tmp_path, variant: str):
    """A Hugging Face SegFormer MiT with random weights, saved as transformers saves (and the Hub serves) it:
    `model.safetensors` in the `segformer.encoder.*` layout, plus the same tensors as a .pth."""
    import warnings

    from safetensors.torch import load_file
    from transformers import SegformerConfig, SegformerForImageClassification

    configs = {"mit_b0": dict(), "mit_b5": dict(depths=[3, 6, 40, 3], hidden_sizes=[64, 128, 320, 512],
                                                 num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=768)}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = SegformerForImageClassification(SegformerConfig(**configs[variant])).eval()
        hf.save_pretrained(tmp_path / "hf")
    state = load_file(tmp_path / "hf/model.safetensors")
    assert any(k.startswith("segformer.encoder.block.0.0.attention.self.key") for k in state)
    torch.save(state, tmp_path / "hf/pytorch_model.bin")
    return hf


@pytest.mark.parametrize("file", ["model.safetensors", "pytorch_model.bin"])
def test_hugging_face_mit_b5_loads_and_gives_the_same_features(tmp_path, file):
    hf = _hf_mit(tmp_path, "mit_b5")
    model = build_model("daformer_mitb5")
    assert load_backbone(model.backbone, tmp_path / "hf" / file) == "hf-segformer-mit"
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        theirs = hf.segformer(x, output_hidden_states=True).hidden_states
        ours = model.backbone.eval()(x)
    assert [t.shape for t in theirs] == [t.shape for t in ours]
    for a, b in zip(theirs, ours):  # LayerNorm epsilons differ (1e-5 / 1e-6): equal to float32 noise
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_transformers_5_in_memory_names_load_too(tmp_path):
    hf = _hf_mit(tmp_path, "mit_b0")
    torch.save(hf.segformer.state_dict(), tmp_path / "v5.pth")  # stages.{i}.blocks.{j}.attention.q_proj ...
    model = build_model("daformer_mitb0")
    assert load_backbone(model.backbone, tmp_path / "v5.pth") == "hf5-segformer-mit"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.eval()(x)[-1], hf.segformer(x).last_hidden_state, atol=1e-4, rtol=1e-4)


def test_timm_resnet101c_loads_into_the_deep_stem_model(tmp_path):
    import timm

    theirs = timm.create_model("resnet101c", pretrained=False).eval()
    state = {k: v.abs() + 0.5 if "running_var" in k else v for k, v in _randomised(theirs.state_dict()).items()}
    theirs.load_state_dict(state)
    torch.save(state, tmp_path / "resnet101c.pth")
    model = build_model("deeplabv2_r101")
    assert load_backbone(model.backbone, tmp_path / "resnet101c.pth") == "timm-resnet-v1c"
    assert torch.equal(model.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # the renamed stem computes what timm's computes
        torch.testing.assert_close(model.backbone.eval().stem(x), theirs.act1(theirs.bn1(theirs.conv1(x))))


def test_a_torchvision_resnet_given_to_the_v1c_model_says_which_model_fits(tmp_path):
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), tmp_path / "resnet101-tv.pth")
    with pytest.raises(WeightsError) as e:
        load_backbone(build_model("deeplabv2_r101").backbone, tmp_path / "resnet101-tv.pth")
    assert "a torchvision ResNet (7x7 stem)" in str(e.value) and "use model.name deeplabv2_r101_tv" in str(e.value)


def test_a_broken_safetensors_file_is_a_one_line_error(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(WeightsError, match="w.safetensors: not a readable safetensors file"):
        load_backbone(build_model("daformer_mitb0").backbone, tmp_path / "w.safetensors")


@pytest.mark.parametrize("spoil,message", [
    (lambda s: {**{0: next(iter(s.values()))}, **s}, "keys that are not parameter names (0)"),
    (lambda s: {**s, "stem.0.weight": [1.0, 2.0]}, "values that are not tensors: stem.0.weight (list)"),
    (lambda s: {**s, "stem.0.weight": s["stem.0.weight"].to(torch.int32)}, "not floating point 1: stem.0.weight"),
    (lambda s: {**s, "stem.0.weight": s["stem.0.weight"].bool()}, "not floating point 1: stem.0.weight"),
    (lambda s: {**s, "stem.0.weight": s["stem.0.weight"] * float("nan")}, "NaN or infinite values in stem.0.weight"),
])
def test_what_is_not_weights_is_refused_naming_the_key_never_cast(tmp_path, spoil, message):
    state = _randomised(build_model("deeplabv2_check").backbone.state_dict())
    torch.save(spoil(state), tmp_path / "w.pth")
    with pytest.raises(WeightsError, match=re.escape(message)):
        load_backbone(build_model("deeplabv2_check").backbone, tmp_path / "w.pth")
