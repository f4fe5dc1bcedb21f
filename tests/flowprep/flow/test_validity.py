"""Validity on constructed flows: in frame, forward-backward consistency, ego vehicle."""

import numpy as np

from flowprep.flow.validity import consistent, in_frame, off_ego, validity


def test_targets_outside_the_frame_are_invalid():
    flow = np.zeros((4, 6, 2), np.float32)
    flow[:, :, 0] = 2.0  # everything moves 2 px right
    ok = in_frame(flow)
    assert ok[:, :4].all() and not ok[:, 4:].any()


def test_forward_backward_consistency_flags_a_disagreeing_region():
    forward = np.full((20, 20, 2), 1.0, np.float32)
    backward = np.full((20, 20, 2), -1.0, np.float32)
    assert consistent(forward, backward)[2:-2, 2:-2].all()
    backward[5:10, 5:10] = 3.0  # where the reverse flow does not come back: occluded in the other frame
    ok = consistent(forward, backward)
    assert not ok[5:8, 5:8].any() and ok[15:18, 15:18].all()


def test_ego_rows_and_pixels_flowing_onto_them_are_invalid():
    flow = np.zeros((10, 4, 2), np.float32)
    flow[6, :, 1] = 3.0  # row 6 moves down onto the hood (rows >= 8)
    ok = off_ego(flow, 0.8)
    assert ok[:6].all() and not ok[6].any() and ok[7].all() and not ok[8:].any()
    assert validity(flow, None, None)[8:].all()  # datasets without a hood
