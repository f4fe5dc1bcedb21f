"""Temporal metrics on a constructed example."""

import pytest
import torch

from vdatrain.metrics.temporal import TemporalMeter, class_accuracy


def test_each_metric_on_a_hand_checked_example():
    pred_t = torch.tensor([[0, 0, 1, 1]])
    warped = torch.tensor([[0, 1, 1, 0]])
    valid = torch.tensor([[True, True, True, False]])
    label = torch.tensor([[0, 0, 1, 255]])
    m = TemporalMeter(num_classes=2)
    m.add(pred_t, warped, valid, label)
    r = m.result([0, 1])
    # PredConsis over 3 valid pixels, warped vs pred_t: class 0 IoU 1/2, class 1 IoU 1/2
    assert r["predconsis_miou"] == pytest.approx(50.0)
    # warped vs label on the 3 labelled valid pixels: (0,0) ok, (0 labelled, 1 predicted), (1,1) ok
    assert r["warped_miou"] == pytest.approx((1 / 2 + 1 / 2) / 2 * 100)
    assert r["warped_acc"] == pytest.approx((1 / 2 + 1) / 2 * 100)
    assert r["warped_acc_precision"] == pytest.approx((1 + 1 / 2) / 2 * 100)
    # consistent pixels: 0 and 2, both correct
    assert r["consistency_miou"] == pytest.approx(100.0) and r["consistency_acc"] == pytest.approx(100.0)
    assert r["retained"] == pytest.approx(100 * 2 / 3)


def test_class_accuracy_skips_unlabelled_classes():
    conf = [[3, 1, 0], [0, 0, 0], [0, 2, 2]]
    assert class_accuracy(conf, [0, 1, 2]) == pytest.approx((0.75 + 0.5) / 2 * 100)


def test_warped_accuracy_as_recall_and_as_the_references_precision():
    # labels [0, 0, 0, 1], warped prediction [0, 1, 1, 1]: class 0 recall 1/3, precision 1/1;
    # class 1 recall 1/1, precision 1/3
    m = TemporalMeter(num_classes=2)
    m.add(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 1, 1]), torch.ones(4, dtype=torch.bool),
          torch.tensor([0, 0, 0, 1]))
    r = m.result([0, 1])
    assert r["warped_acc"] == pytest.approx((1 / 3 + 1) / 2 * 100)
    assert r["warped_acc_precision"] == pytest.approx((1 + 1 / 3) / 2 * 100)


def test_temporal_metrics_under_both_class_protocols():
    # three classes, class 2 not evaluated: a pixel of class 0 predicted (warped) as class 2 is an error under
    # the standard protocol and left out under the reference's
    m = TemporalMeter(num_classes=3)
    pred = torch.tensor([0, 0, 1, 1])
    m.add(pred, torch.tensor([0, 2, 1, 1]), torch.ones(4, dtype=torch.bool), torch.tensor([0, 0, 1, 1]))
    standard, reference = m.result([0, 1], "standard"), m.result([0, 1], "unifiedvideoda")
    assert standard["warped_miou"] == pytest.approx((1 / 2 + 1) / 2 * 100)
    assert reference["warped_miou"] == pytest.approx(100.0)
    assert standard["warped_acc"] == pytest.approx((1 / 2 + 1) / 2 * 100) and reference["warped_acc"] == 100.0
