"""Pseudo-labels: argmax class, ONE weight per batch (share of confident pixels), times the margin."""

import torch

from vdatrain.adapt.pseudo_label import class_probs, confident_share


def pseudo_label(logits, threshold, size=None, margin=None):
    """What self-training does with the teacher's logits: the argmax label and the batch's confidence weight."""
    confidence, label = class_probs(logits, size).max(1)
    weight = confident_share(confidence, threshold) * torch.ones_like(confidence)
    return label, weight if margin is None else weight * margin


def test_the_weight_is_one_scalar_for_the_whole_batch():
    logits = torch.zeros(2, 3, 2, 2)
    logits[0, 1] = 10.0  # image 0: every pixel confident (p ~ 0.99991), class 1
    logits[1, 2, 0, 0] = 10.0  # image 1: one confident pixel of class 2; the rest uniform (1/3)
    label, weight = pseudo_label(logits, threshold=0.968)
    assert label[0].eq(1).all() and label[1, 0, 0] == 2
    # 5 of the batch's 8 pixels are confident -> 0.625 everywhere, in both images
    torch.testing.assert_close(weight, torch.full((2, 2, 2), 5 / 8))


def test_margins_zero_the_weight_and_logits_are_upsampled_to_the_crop():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0] = 10.0
    margin = torch.ones(1, 4, 4)
    margin[:, 0] = 0
    label, weight = pseudo_label(logits, 0.968, size=(4, 4), margin=margin)
    assert label.shape == (1, 4, 4) and label.eq(0).all()
    assert weight[0, 0].eq(0).all() and weight[0, 1:].eq(1).all()
