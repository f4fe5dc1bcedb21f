"""Rare class sampling: draw a class, favouring rare ones, then a source sample that holds it.

From the store's per-sample class pixel counts (native label resolution):
f_c = share of all labelled pixels that are class c (classes with no pixels left out),
P(c) = softmax((1 - f_c) / T) with T = 0.01; the sample is drawn uniformly among
those with more than `min_pixels` pixels of c. Classes that no sample qualifies for
are left out (and reported). The chosen class travels with the sample so its crop
can be re-drawn until it holds enough of it (`StoreSamples.draw(..., rare_class=c)`).
"""

from __future__ import annotations

import numpy as np


def class_probabilities(counts: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) pixel counts -> (classes present, their sampling probabilities)."""
    freq = counts.sum(0).astype(np.float64)
    freq /= freq.sum()
    classes = np.flatnonzero(freq > 0)
    logits = (1 - freq[classes]) / temperature
    p = np.exp(logits - logits.max())
    return classes, p / p.sum()


class RareClassSampler:
    """A picklable chooser for `IterationBatches`: (iteration, batch) -> [(item, class), ...]."""

    def __init__(self, counts: np.ndarray, temperature: float = 0.01, min_pixels: int = 3000, seed: int = 0):
        classes, p = class_probabilities(counts, temperature)
        self.samples = {int(c): np.flatnonzero(counts[:, c] > min_pixels) for c in classes}
        keep = np.array([len(self.samples[int(c)]) > 0 for c in classes])
        self.dropped = [int(c) for c in classes[~keep]]
        if not keep.any():
            raise ValueError(f"rare class sampling: no sample has more than {min_pixels} pixels of any class "
                             f"(adapt.rcs.min_pixels is too high for these images)")
        self.classes, self.p = classes[keep], p[keep] / p[keep].sum()
        self.seed = seed

    def log_record(self) -> dict:
        """What the run log keeps of the sampler: the classes, their probabilities and the classes left out."""
        return {"rcs_classes": self.classes.tolist(), "rcs_p": self.p.round(4).tolist(),
                "rcs_classes_without_samples": self.dropped}

    def __call__(self, it: int, batch: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, 0x5C5, it])
        out = []
        for _ in range(batch):
            c = int(rng.choice(self.classes, p=self.p))
            out.append((int(rng.choice(self.samples[c])), c))
        return out
