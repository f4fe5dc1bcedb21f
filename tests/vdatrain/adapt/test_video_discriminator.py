"""The video discriminator: AdaptSegNet shape, the reference's joint softmax at half the crop and weight 1e-4,
LS-GAN signs, its own optimiser, no gradient leaks."""

import pytest
import torch

from vdatrain.adapt.video_discriminator import (VideoAdversary, VideoDiscriminator, adversarial_loss,
                                                discriminator_loss)
from vdatrain.recipe import VideoDiscSpec


def test_five_stride_2_convolutions_on_two_stacked_softmaxes():
    d = VideoDiscriminator(2 * 19)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert convs[0].in_channels == 38
    assert d(torch.randn(2, 19, 128, 64), torch.randn(2, 19, 128, 64)).shape == (2, 1, 4, 2)


def test_joint_softmax_over_both_frames_at_half_the_crop():
    spec = VideoDiscSpec()
    assert (spec.weight, spec.softmax, spec.scale) == (1.0e-4, "joint", 0.5)  # the reference's defaults
    adv = VideoAdversary(3, spec, iters=10, device="cpu")
    assert adv.input_size((1024, 720)) == (512, 360)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    joint = adv.model.inputs(a, b)
    assert joint.shape == (2, 6, 8, 8)
    torch.testing.assert_close(joint.sum(1), torch.ones(2, 8, 8))  # ONE softmax over the 2C channels
    torch.testing.assert_close(joint, torch.softmax(torch.cat([a, b], 1), 1))
    per_frame = VideoDiscriminator(6, softmax="per_frame").inputs(a, b)
    torch.testing.assert_close(per_frame.sum(1), torch.full((2, 8, 8), 2.0))  # each frame sums to one


def test_ls_gan_losses_have_the_right_signs():
    """The reference's labels (`dacsAdvseg.py`: source_label 0, target_label 1)."""
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert discriminator_loss(zeros, ones) == 0  # a perfect discriminator: source 0, target 1
    assert discriminator_loss(ones, zeros) == 1  # the worst one
    assert adversarial_loss(zeros) == 0  # the target fools it completely
    assert adversarial_loss(ones) == 1
    assert discriminator_loss(torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.5)) == pytest.approx(0.25)


def test_the_generator_loss_is_weighted_and_leaves_the_discriminator_alone():
    torch.manual_seed(0)
    adv = VideoAdversary(3, VideoDiscSpec(weight=0.1), iters=10, device="cpu")
    logits_t = torch.randn(1, 3, 64, 64, requires_grad=True)
    loss = adv.generator_loss(logits_t, torch.randn(1, 3, 64, 64))
    loss.backward()
    assert logits_t.grad is not None
    assert all(p.grad is None for p in adv.model.parameters())
    assert all(p.requires_grad for p in adv.model.parameters())
    with torch.no_grad():
        unweighted = adversarial_loss(adv.model(logits_t, torch.zeros(1, 3, 64, 64)))
    assert unweighted > 0


def test_the_discriminator_learns_to_tell_the_domains_apart_with_its_poly_schedule():
    torch.manual_seed(0)
    spec = VideoDiscSpec(lr=1e-3)
    adv = VideoAdversary(3, spec, iters=40, device="cpu")
    source = (torch.randn(2, 3, 64, 64) * 4, torch.randn(2, 3, 64, 64) * 4)
    target = (torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 64, 64))
    part = adv.optimizer()  # what the training loop steps after the network's step
    assert part.name == "disc" and part.module is adv.model
    assert part.step(0) is None  # nothing judged yet: no step
    losses = []
    for it in range(30):
        adv.judge(source, target)
        losses.append(part.step(it))
    assert losses[-1] < losses[0] / 4
    assert part.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 29 / 40) ** 0.9)


def test_the_discriminators_own_loss_is_scaled_by_the_references_adv_scale():
    """L_D x own_loss_scale (0.1, the reference's adv_scale on its D losses): the loss its optimiser steps on."""
    torch.manual_seed(0)
    source, target = (torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)), (torch.randn(1, 3, 64, 64),
                                                                            torch.randn(1, 3, 64, 64))
    losses = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(1)
        adv = VideoAdversary(3, VideoDiscSpec(own_loss_scale=scale), iters=10, device="cpu")
        adv.judge(source, target)
        losses[scale] = adv.loss()
    assert losses[0.1].item() == pytest.approx(0.1 * losses[1.0].item(), rel=1e-6)
    assert VideoDiscSpec().own_loss_scale == 0.1
