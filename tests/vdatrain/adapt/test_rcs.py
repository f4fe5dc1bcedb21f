"""Rare class sampling: P(c) = softmax((1 - f_c) / T); samples with more than min_pixels of c."""

import numpy as np
import pytest

from vdatrain.adapt.rcs import RareClassSampler, class_probabilities


def test_probabilities_for_given_counts():
    counts = np.array([[900, 50, 0], [900, 150, 0]])  # f = (0.9, 0.1, 0); class 2 absent
    classes, p = class_probabilities(counts, 0.01)
    assert classes.tolist() == [0, 1]
    # softmax of (0.1, 0.9) / 0.01 = softmax(10, 90)
    expected = np.exp([10 - 90, 0.0]) / np.exp([10 - 90, 0.0]).sum()
    np.testing.assert_allclose(p, expected)


def test_samples_are_drawn_among_those_holding_the_class():
    counts = np.array([[5000, 10], [5000, 4000], [5000, 3001], [5000, 0]])
    sampler = RareClassSampler(counts, temperature=0.01, min_pixels=3000, seed=0)
    draws = [item for it in range(50) for item in sampler(it, 2)]
    rare = [k for k, c in draws if c == 1]
    assert len(rare) > 90 and set(rare) == {1, 2}  # class 1 dominates; only samples 1 and 2 qualify
    assert sampler(7, 2) == sampler(7, 2)  # a pure function of the iteration


def test_a_threshold_nobody_reaches_is_an_error():
    with pytest.raises(ValueError, match="min_pixels"):
        RareClassSampler(np.array([[10, 5]]), min_pixels=3000)
