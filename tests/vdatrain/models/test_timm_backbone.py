"""Any timm model as a backbone: plain ViTs (DINOv2, DINOv3, EVA-02) with their feature pyramid, any input size,
their weights in the layouts people have (timm, Meta's releases, Hugging Face), and what HRDA, the teacher and
the optimiser may assume of them."""

import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from vdatrain.adapt.ema import EMATeacher
from vdatrain.models import build_model
from vdatrain.models.weights import WeightsError, load_backbone
from vdatrain.optim import param_groups
from vdatrain.recipe.schema import BackboneSpec, HRDASpec

TINY = dict(embed_dim=32, depth=2, num_heads=2)


def tiny(name: str = "vit_small_patch16_dinov3_qkvb", **kw) -> BackboneSpec:
    return BackboneSpec(timm=name, **{**TINY, **kw})


def _random(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter drawn anew (timm zero-initialises biases and tokens, which would hide a swapped key)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1 if p.dim() == 1 and "norm" in str(p) else 0))
    return model.eval()


def _last_level(spec: BackboneSpec, path, x) -> torch.Tensor:
    model = build_model("daformer_timm", 5, backbone=BackboneSpec(**{**spec.__dict__, "pyramid": "none"}))
    load_backbone(model.backbone, path)
    return model.backbone.eval()(x)[-1]


def _timm_reference(name, x, **kw):
    """A random timm model and its last block's normalised patch features (B, D, h, w)."""
    ref = _random(timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True, **{**TINY, **kw}))
    with torch.no_grad():
        return ref, ref.forward_intermediates(x, indices=[TINY["depth"] - 1], norm=True, intermediates_only=True)[0]


def test_plain_vit_levels_match_the_declaration_at_any_input_size():
    model = build_model("daformer_timm", 5, backbone=tiny())
    for h, w in ((64, 96), (360, 200)):  # 360 rows: not whole patches, padded inside
        feats = model.backbone(torch.randn(1, 3, h, w))
        assert [tuple(f.shape[1:]) for f in feats] == [
            (lv.channels, math.ceil(h / lv.reduction), math.ceil(w / lv.reduction)) for lv in model.backbone.levels]
    assert [lv.reduction for lv in model.backbone.levels] == [4, 8, 16, 32] and model.output_stride == 4


def test_a_single_scale_vit_has_one_level_at_the_patch_stride():
    model = build_model("daformer_timm", 5, backbone=tiny(pyramid="none"))
    assert [lv.reduction for lv in model.backbone.levels] == [16] and model.output_stride == 16
    assert model(torch.randn(1, 3, 64, 96)).logits.shape == (1, 5, 4, 6)


def test_dinov2_patch_14_needs_a_patch_size_for_the_pyramid_and_takes_16():
    with pytest.raises(ValueError, match="model.backbone.pyramid: simple needs a patch size divisible by 4"):
        build_model("daformer_timm", 5, backbone=tiny("vit_small_patch14_dinov2"))
    model = build_model("daformer_timm", 5, backbone=tiny("vit_small_patch14_dinov2", patch_size=16))
    assert model.backbone.levels[2].reduction == 16


def test_weights_from_timm_files_give_the_timm_models_features(tmp_path):
    x = torch.randn(1, 3, 64, 96)
    for name, kw in (("vit_small_patch16_dinov3_qkvb", {}), ("vit_small_patch14_reg4_dinov2", {"img_size": 56}),
                     ("eva02_tiny_patch14_224", {"img_size": 56})):
        x = torch.randn(1, 3, 56, 84) if "14" in name else torch.randn(1, 3, 64, 96)
        ref, want = _timm_reference(name, x, **kw)
        save_file(ref.state_dict(), tmp_path / "timm.safetensors")
        spec = tiny(name, **kw)
        got = _last_level(spec, tmp_path / "timm.safetensors", _imagenet(x, ref))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _imagenet(x_model: torch.Tensor, ref) -> torch.Tensor:
    """The ImageNet-normalised input equal to `x_model` under the model's own mean and std (EVA-02: CLIP's)."""
    from vdatrain.data.normalise import IMAGENET_MEAN, IMAGENET_STD

    mean, std = (torch.tensor(ref.pretrained_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    rgb = x_model * std + mean
    return (rgb - torch.tensor(IMAGENET_MEAN / 255).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD / 255).view(1, 3, 1, 1)


def test_meta_dinov2_release_layout_loads(tmp_path):
    """Meta's DINOv2 `.pth`: register_tokens, mask_token, ls1.gamma, and a position embedding that holds the class
    token's position (timm keeps that one in the class token instead)."""
    x = torch.randn(1, 3, 56, 56)
    ref, want = _timm_reference("vit_small_patch14_reg4_dinov2", x, img_size=56)
    meta = {k.replace("reg_token", "register_tokens"): v for k, v in ref.state_dict().items()}
    cls_position = torch.randn(1, 1, 32)
    meta["pos_embed"] = torch.cat([cls_position, meta["pos_embed"]], 1)
    meta["cls_token"] = meta["cls_token"] - cls_position
    meta["mask_token"] = torch.zeros(1, 32)
    torch.save(meta, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    got = _last_level(tiny("vit_small_patch14_reg4_dinov2", img_size=56), tmp_path / "dinov2_vits14_reg4_pretrain.pth", x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _meta_dinov3(ref) -> dict:
    """Meta's DINOv3 `.pth` layout: storage_tokens, ls{1,2}.gamma, qkv.bias with a zero key part and its mask."""
    out = {}
    for k, v in ref.state_dict().items():
        if k.endswith("attn.q_bias"):
            v_bias = ref.state_dict()[k.replace("q_bias", "v_bias")]
            out[k.replace("q_bias", "qkv.bias")] = torch.cat([v, torch.zeros_like(v), v_bias])
            out[k.replace("q_bias", "qkv.bias_mask")] = torch.cat([torch.ones_like(v), torch.zeros_like(v),
                                                                  torch.ones_like(v)])
        elif not k.endswith("attn.v_bias"):
            out[k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma")
                .replace("gamma_2", "ls2.gamma")] = v
    out["mask_token"] = torch.zeros(1, 32)
    out["rope_embed.periods"] = torch.ones(4)
    return out


def test_meta_dinov3_release_layout_loads_and_its_biases_are_not_dropped(tmp_path):
    x = torch.randn(1, 3, 64, 96)
    ref, want = _timm_reference("vit_small_patch16_dinov3_qkvb", x)
    torch.save(_meta_dinov3(ref), tmp_path / "dinov3_vits16_pretrain.pth")
    got = _last_level(tiny(), tmp_path / "dinov3_vits16_pretrain.pth", x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the variant without biases would lose them: refused, naming the key and the variant to take
    with pytest.raises(WeightsError, match=r"blocks\.0\.attn\.qkv\.bias holds non-zero biases .*_qkvb"):
        _last_level(tiny("vit_small_patch16_dinov3"), tmp_path / "dinov3_vits16_pretrain.pth", x)


def _hf_saved(model, tmp_path) -> str:
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf" / "model.safetensors"


def test_hugging_face_dinov2_loads(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                          patch_size=14, image_size=56, layerscale_value=0.5)
    hf = _random(Dinov2Model(config))
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        tokens = hf(pixel_values=x).last_hidden_state[:, 1:]  # after the class token
    want = tokens.transpose(1, 2).reshape(1, 32, 4, 4)
    got = _last_level(tiny("vit_small_patch14_dinov2", img_size=56), _hf_saved(hf, tmp_path), x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_hugging_face_dinov3_loads(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                             patch_size=16, image_size=64, num_register_tokens=4, layer_norm_eps=1e-5)
    hf = _random(DINOv3ViTModel(config))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        tokens = hf(pixel_values=x).last_hidden_state[:, 5:]  # after the class and 4 register tokens
    want = tokens.transpose(1, 2).reshape(1, 32, 4, 6)
    got = _last_level(tiny(), _hf_saved(hf, tmp_path), x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_file_of_another_model_names_the_keys(tmp_path):
    torch.save(build_model("daformer_mitb0").backbone.state_dict(), tmp_path / "mit_b0.pth")
    model = build_model("daformer_timm", 5, backbone=tiny())
    with pytest.raises(WeightsError, match=r"mit_b0\.pth .*does not fit vit_small_patch16_dinov3_qkvb: missing .*"
                                           r"model\.blocks\.0.*unexpected .*block1\.0"):
        load_backbone(model.backbone, tmp_path / "mit_b0.pth")


def test_hrda_on_a_stride_16_backbone_places_the_detail_logits_in_their_box():
    torch.manual_seed(0)
    base = build_model("daformer_timm", 3, backbone=tiny(pyramid="none"))
    model = build_model("daformer_timm", 3, HRDASpec(detail_crop=(32, 48), detail_stride=(16, 16), box_grid=16),
                        backbone=tiny(pyramid="none"))
    model.load_state_dict({**model.state_dict(), **{k: v for k, v in base.state_dict().items()}}, strict=False)
    model.eval()
    x = torch.randn(1, 3, 64, 96)
    box = (16, 48, 32, 80)  # rows 16..48, columns 32..80: cells 1..3 x 2..5 at stride 16
    out = model(x, box=box)
    assert out.detail.shape == (1, 3, 2, 3)
    with torch.no_grad():
        attention = torch.sigmoid(model.attention(model.backbone(
            torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))))
        context = model.head(model.backbone(
            torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)))
    up = torch.nn.functional.interpolate
    mask = torch.zeros_like(attention)
    mask[:, :, 0:1, 1:2] = 1  # the box in context cells of 32 px: rows 16//32..48//32, columns 32//32..80//32
    a = up(attention * mask, (4, 6), mode="bilinear", align_corners=False)
    canvas = torch.zeros(1, 3, 4, 6)
    canvas[:, :, 1:3, 2:5] = out.detail
    want = a * canvas + up((1 - attention * mask) * context, (4, 6), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=1e-5)


def test_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = build_model("daformer_timm", 5, backbone=tiny(drop_path=0.5)).train()
    ckpt = build_model("daformer_timm", 5, backbone=tiny(drop_path=0.5), checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(7)  # the same drop-path draws
        loss = model(x).logits.square().mean()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=0, rtol=0)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_the_teacher_switches_stochastic_depth_off_whatever_its_class():
    torch.manual_seed(0)
    student = build_model("daformer_timm", 5, backbone=tiny(drop_path=0.9)).train()
    x = torch.randn(2, 3, 64, 64)
    assert not torch.equal(student(x).logits, student(x).logits)  # the student drops paths
    teacher = EMATeacher(student)
    torch.testing.assert_close(teacher.predict(x), teacher.predict(x), atol=0, rtol=0)


def test_position_embeddings_and_tokens_take_no_weight_decay_and_layer_decay_is_by_depth():
    model = build_model("daformer_timm", 5, backbone=tiny("vit_small_patch14_dinov2", patch_size=16))
    groups = param_groups(model, lr=1.0, weight_decay=0.01, head_lr_mult=10.0, layer_decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    # L = depth + 1 = 3 layers: embeddings 0, blocks 1 and 2, the rest (final norm, pyramid) 3
    assert by_name["backbone.model.pos_embed"] == (0.5 ** 3, 0.0)
    assert by_name["backbone.model.cls_token"] == (0.5 ** 3, 0.0)
    assert by_name["backbone.model.patch_embed.proj.weight"] == (0.5 ** 3, 0.01)
    assert by_name["backbone.model.blocks.0.attn.qkv.weight"] == (0.5 ** 2, 0.01)
    assert by_name["backbone.model.blocks.0.norm1.weight"] == (0.5 ** 2, 0.0)  # "norm" in its name
    assert by_name["backbone.model.blocks.1.mlp.fc1.weight"] == (0.5, 0.01)
    assert by_name["backbone.model.norm.weight"] == (1.0, 0.0)
    assert by_name["backbone.pyramid.up2.weight"] == (1.0, 0.01)
    assert by_name["head.conv_seg.weight"] == (10.0, 0.01)
    plain = {g["name"] for g in param_groups(model, 1.0, 0.01, 10.0)}
    assert plain == {"backbone", "backbone-norm", "head"}  # layer_decay 1: the paper's groups (no "norm" in the head)


def test_clip_statistics_are_applied_inside_the_backbone():
    """EVA-02 was pretrained with CLIP's mean and std: the backbone takes ImageNet-normalised input like every
    other and gives what the timm model gives on its own normalisation."""
    x = torch.randn(1, 3, 56, 56)
    ref, want = _timm_reference("eva02_tiny_patch14_224", x, img_size=56)
    model = build_model("daformer_timm", 5, backbone=tiny("eva02_tiny_patch14_224", img_size=56, pyramid="none"))
    model.backbone.model.load_state_dict(ref.state_dict())
    assert model.backbone.renormalise
    torch.testing.assert_close(model.backbone.eval()(_imagenet(x, ref))[-1], want, atol=1e-5, rtol=1e-5)


def test_hierarchical_timm_models_declare_their_own_levels_and_divisibility():
    model = build_model("daformer_timm", 5, backbone=BackboneSpec(timm="convnext_atto"))
    assert [lv.reduction for lv in model.backbone.levels] == [4, 8, 16, 32]
    assert model.backbone.size_divisibility == 32
    feats = model.backbone(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == model.backbone.channels
