"""mIoU against hand-computed confusion matrices, under both protocols."""

import numpy as np
import pytest
import torch

from vdatrain.metrics.miou import confusion, iou_per_class, miou


def test_confusion_counts_labels_by_predictions_and_skips_ignore():
    label = torch.tensor([[0, 0, 1, 255], [2, 1, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 0]])
    conf = confusion(pred, label, 3)
    assert conf.tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 1]]


# Three classes; class 2 is not evaluated (say "pole" on a VIPER shift).
#            predicted: 0   1   2
CONF = np.array([[8, 2, 2],   # label 0
                 [1, 6, 3],   # label 1
                 [4, 0, 5]])  # label 2: excluded by both protocols


def test_standard_protocol_by_hand():
    # class 0: TP 8, FP 1 (label 1 -> 0; label-2 pixels excluded), FN 2 + 2 -> 8 / 13
    # class 1: TP 6, FP 2, FN 1 + 3 -> 6 / 12
    np.testing.assert_allclose(iou_per_class(CONF, [0, 1], "standard"), [8 / 13, 6 / 12])
    assert miou(CONF, [0, 1]) == pytest.approx(100 * (8 / 13 + 6 / 12) / 2)


def test_reference_protocol_drops_pixels_predicted_as_non_evaluated_classes():
    # predictions of class 2 vanish: class 0: TP 8, FP 1, FN 2 -> 8 / 11; class 1: TP 6, FP 2, FN 1 -> 6 / 9
    np.testing.assert_allclose(iou_per_class(CONF, [0, 1], "unifiedvideoda"), [8 / 11, 6 / 9])
    assert miou(CONF, [0, 1], "unifiedvideoda") > miou(CONF, [0, 1], "standard")


def test_classes_absent_everywhere_do_not_count_and_all_evaluated_is_plain_miou():
    conf = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 4]])
    assert np.isnan(iou_per_class(conf, [0, 1, 2])[1])
    assert miou(conf, [0, 1, 2]) == pytest.approx(100 * (5 / 6 + 4 / 5) / 2)
    assert miou(conf, [0, 1, 2], "unifiedvideoda") == miou(conf, [0, 1, 2], "standard")


def test_unknown_protocol():
    with pytest.raises(ValueError, match="protocol 'mmseg'"):
        miou(CONF, [0, 1], "mmseg")
