"""The models are the paper's architectures: strides, dilations, heads, output shapes, parameter counts."""

import pytest
import torch

from vdatrain.models import MODELS, build_model
from vdatrain.models.daformer import DAFormerHead, SeparableConvModule


@pytest.mark.parametrize("name,stride", [("deeplabv2_r18", 8), ("daformer_mitb0", 4)])
@pytest.mark.parametrize("h,w", [(64, 64), (97, 130)])
def test_logits_come_at_the_output_stride(name, stride, h, w):
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        x = torch.randn(2, 3, h, w)
        out = model(x)
    assert out.logits.shape == (2, 7, -(-h // stride), -(-w // stride))
    assert out.feature_input is x and out.detail is None and out.box is None
    torch.testing.assert_close(model.predict(x), out.logits)  # the whole input: logits at the output stride
    assert model.output_stride == stride


def test_resnet101_v1c_is_dilated_to_stride_8_with_a_deep_stem():
    backbone = build_model("deeplabv2_r101").backbone
    assert [m.out_channels for m in backbone.stem if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64]
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert backbone.layer2[0].conv2.stride == (2, 2) and backbone.layer3[0].conv2.stride == (1, 1)
    # contract dilation: the first block of a dilated stage uses half the stage's dilation
    assert backbone.layer3[0].conv2.dilation == (1, 1) and backbone.layer3[1].conv2.dilation == (2, 2)
    assert backbone.layer4[0].conv2.dilation == (2, 2) and backbone.layer4[2].conv2.dilation == (4, 4)
    assert all(p.requires_grad for p in backbone.parameters())  # trainable BN


def test_deeplabv2_head_sums_two_dilated_convs():
    head = build_model("deeplabv2_r18", num_classes=5).head
    assert [c.dilation for c in head.aspp] == [(6, 6), (12, 12)]
    x = torch.randn(1, 512, 9, 9)
    assert torch.allclose(head(x), head.aspp[0](x) + head.aspp[1](x))


def test_daformer_head_fuses_stride_4_embeddings_with_separable_aspp():
    head = build_model("daformer_mitb5").head
    assert [m.proj.out_features for m in head.embed_layers.values()] == [256] * 4
    branches = head.fuse_layer.aspp_modules
    assert not isinstance(branches[0], SeparableConvModule) and branches[0].conv.kernel_size == (1, 1)
    assert [b.depthwise_conv.conv.dilation for b in branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert head.fuse_layer.bottleneck.conv.kernel_size == (3, 3) and head.dropout.p == 0.1
    attention = DAFormerHead([64, 128, 320, 512], 19, fusion="conv1x1")  # HRDA's scale-attention head
    assert attention.fuse_layer.conv.kernel_size == (1, 1)


def test_full_size_parameter_counts_match_the_published_encoders():
    mit_b5 = sum(p.numel() for p in build_model("daformer_mitb5").backbone.parameters())
    assert 81.3e6 < mit_b5 < 81.5e6  # SegFormer: MiT-B5 encoder 81.4M
    r101 = sum(p.numel() for p in build_model("deeplabv2_r101_tv").backbone.parameters())
    assert r101 == 42_500_160  # torchvision resnet101 without its classifier


def test_mit_b5_stages_and_drop_path():
    b = build_model("daformer_mitb5").backbone
    assert [len(getattr(b, f"block{i}")) for i in range(1, 5)] == [3, 6, 40, 3]
    assert [getattr(b, f"block{i}")[0].attn.heads for i in range(1, 5)] == [1, 2, 5, 8]
    assert [getattr(b, f"block{i}")[0].attn.sr_ratio for i in range(1, 5)] == [8, 4, 2, 1]
    assert b.block4[-1].drop_path.p == pytest.approx(0.1)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model.name: 'unet' is not a registered model"):
        build_model("unet")
    assert set(MODELS) >= {"deeplabv2_r101", "daformer_mitb5"}
