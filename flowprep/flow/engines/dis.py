"""OpenCV DIS optical flow: CPU, no weights; for machines without a GPU and for tests."""

from __future__ import annotations

import cv2
import numpy as np

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
