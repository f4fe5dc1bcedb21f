"""Activation checkpointing (`model.checkpointing`) gives the losses, gradients and buffers of a run without it;
the narrow check networks keep their families' contracts."""

import copy

import pytest
import torch

from vdatrain.models import MODELS, build_model, check_model
from vdatrain.recipe import HRDASpec
from vdatrain.recipe.schema import BackboneSpec


def _step(model, x, y, box):
    """One HRDA training forward and backward; returns the loss, the gradients and the buffers after it."""
    out = model(x, box=box)
    logits = torch.nn.functional.interpolate(out.logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
    loss = torch.nn.functional.cross_entropy(logits, y) + out.detail.square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), grads, buffers


TINY_VIT = BackboneSpec(timm="vit_small_patch16_dinov3", embed_dim=32, depth=2, num_heads=2, drop_path=0.5)


# every family, through its small members (the large ones run the same code, minutes slower on a CPU)
@pytest.mark.parametrize("name", ["deeplabv2_r18", "daformer_mitb0", "daformer_timm",
                                  *(n for n in MODELS if n.endswith("_check"))])
def test_checkpointing_changes_nothing_but_memory(name):
    torch.manual_seed(0)
    hrda = HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16))
    backbone = TINY_VIT if "timm" in name else None  # the models built around a timm model a recipe names
    plain = build_model(name, 5, hrda, backbone=backbone).train()
    ckpt = build_model(name, 5, hrda, checkpointing=True, backbone=backbone).train()
    ckpt.load_state_dict(plain.state_dict())
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # the same drop-path draws
        results.append(_step(model, x, y, (16, 48, 0, 32)))
    (loss_a, grads_a, buf_a), (loss_b, grads_b, buf_b) = results
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == len(list(plain.parameters()))
    for n in grads_a:
        torch.testing.assert_close(grads_a[n], grads_b[n], rtol=1e-5, atol=1e-6, msg=n)
    for n in buf_a:  # BatchNorm running statistics updated once per forward, not again when recomputed
        assert torch.equal(buf_a[n], buf_b[n]), n


def test_checkpointed_stages_are_recomputed_in_backward():
    model = build_model("deeplabv2_r18", 5, checkpointing=True).train()
    calls = []
    model.backbone.layer3.register_forward_pre_hook(lambda *_: calls.append(1))
    model(torch.randn(2, 3, 32, 32)).logits.sum().backward()
    assert len(calls) == 2  # forward, then once more in backward
    calls.clear()
    with torch.no_grad():  # the teacher and evaluation run plainly
        model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 1
    calls.clear()
    model.eval()
    model(torch.randn(1, 3, 32, 32)).logits.sum().backward()
    assert len(calls) == 1


@pytest.mark.parametrize("family,stride", [("deeplabv2", 8), ("daformer", 4)])
def test_narrow_check_networks_are_their_family_at_a_fraction_of_the_size(family, stride):
    narrow = build_model(check_model(family), 19, HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16)))
    full = MODELS["deeplabv2_r18" if family == "deeplabv2" else "daformer_mitb0"](num_classes=19)
    assert type(narrow.head) is type(full.head) and narrow.output_stride == stride
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in full.parameters()) / 20
    with torch.no_grad():
        out = copy.deepcopy(narrow).eval().predict(torch.randn(1, 3, 70, 90))
    assert out.shape == (1, 19, 70, 90)  # HRDA inference: logits at input resolution
