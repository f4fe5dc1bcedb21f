"""OpenCV DIS optical flow: CPU, no weights; for machines without a GPU and for tests."""

from __future__ import annotations

import cv2
import numpy as np

from flowprep.flow.validity import validity

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class DisEngine:
    def __init__(self, preset: str = "medium"):
        self.name = f"dis-{preset}"
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        self._dis.setUseSpatialPropagation(True)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB pairs -> (B, H, W, 2) float32 flow first -> second, pixels."""
        out = []
        for a, b in zip(first, second):
            ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
            out.append(self._dis.calc(ga, gb, None))
        return np.stack(out).astype(np.float32)

    def flow_and_validity(self, first: np.ndarray, second: np.ndarray, consistency: bool = True,
                          ego_row: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) pairs -> flows first -> second (B, H, W, 2) and their validity (B, H, W) (see
        `flowprep.flow.validity`), both directions in one call when `consistency`."""
        forward = self(first, second)
        backward = self(second, first) if consistency else [None] * len(first)
        return forward, np.stack([validity(f, bwd, ego_row) for f, bwd in zip(forward, backward)])
