"""The batches of a run, one per iteration, as a pure function of (seed, iteration, process).

`IterationBatches[it]` is this process's share of iteration `it`'s batch: which
samples (a fresh permutation of the data per pass, sliced by iteration) and their
crops (seeded by the iteration) depend on nothing else. So a DataLoader with any
number of workers, fork or spawn, yields the same batches, and a resumed run only
has to start the iteration range where the checkpoint stopped: the checkpoint's
iteration is the data sampler's whole state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vdatrain.data.crops import crop_part
from vdatrain.data.samples import StoreSamples
from vdatrain.distributed import Dist

# (iteration, global batch size) -> items: an index, or (index, rare class); picklable
Chooser = Callable[[int, int], list]


def batch_indices(seed: int, it: int, batch: int, n: int, stream: int = 0) -> list[int]:
    """Items of iteration `it`: consecutive slices of a fresh permutation per pass over the data
    (source and target streams draw independent permutations)."""
    start = it * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, stream, epoch]).permutation(n)
        out.append(int(perm[pos]))
    return out


class IterationBatches(torch.utils.data.Dataset):
    """Item `it` -> {"source": batch, "target": batch (when a target is given)}, this process's share.

    `choose` picks the global batch's items of one stream (default: `batch_indices`); rare class
    sampling replaces it for the source.
    """

    def __init__(self, source: StoreSamples, batch_size: int, seed: int, dist: Dist = Dist(),
                 target: StoreSamples | None = None, choose_source: Chooser | None = None):
        dist.shard(list(range(batch_size)))  # fail before training if the batch does not split
        self.streams = {"source": source} | ({"target": target} if target is not None else {})
        self.batch_size, self.seed, self.dist = batch_size, seed, dist
        self.choose_source = choose_source

    def choose(self, name: str, it: int) -> list[int]:
        """The global batch's items of stream `name` at iteration `it`."""
        if name == "source" and self.choose_source is not None:
            return self.choose_source(it, self.batch_size)
        return batch_indices(self.seed, it, self.batch_size, len(self.streams[name]), stream=list(self.streams).index(name))

    def __len__(self) -> int:
        return 2 ** 62  # indexed by iteration; the sampler says which

    def __getitem__(self, it: int) -> dict:
        return {name: data.batch([data.draw(*item, epoch=it) if isinstance(item, tuple) else data.draw(item, epoch=it)
                                  for item in self.dist.shard(self.choose(name, it))])
                for name, data in self.streams.items()}


def loader(batches: IterationBatches, start: int, stop: int, workers: int, context: str | None = None):
    """Iterate batches[start:stop] in order with `workers` background processes; in pinned memory when a GPU
    takes them (so `to_model`'s copies are asynchronous)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, stop), num_workers=workers,
                                       multiprocessing_context=context if workers else None,
                                       persistent_workers=False, prefetch_factor=2 if workers else None,
                                       pin_memory=torch.cuda.is_available())


def to_model(batch: dict, device: torch.device) -> dict:
    """A loader batch on `device`, as the model takes it: each stream's native windows moved (non-blocking from
    pinned memory) and cropped there (`crops.crop_part`: frames (B, F, 3, h, w) float32 normalised, flows
    (B, 2, h, w) float32 pixels, masks and labels of the crop)."""
    return {name: crop_part(part, device) for name, part in batch.items()}
