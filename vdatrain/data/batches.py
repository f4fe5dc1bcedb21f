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


def process_share(items: list, rank: int, world: int) -> list:
    """Process `rank`'s contiguous share of a global batch of `world` equal shares."""
    n = len(items) // world
    return items[rank * n:(rank + 1) * n]


class IterationBatches(torch.utils.data.Dataset):
    """Item `it` -> {"source": batch, "target": batch (when a target is given)}, process `rank`'s share of
    `world` (the global `batch_size` splits evenly: the run checks it).

    `choose` picks the global batch's items of one stream (default: `batch_indices`); rare class
    sampling replaces it for the source.
    """

    def __init__(self, source: StoreSamples, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 target: StoreSamples | None = None, choose_source: Chooser | None = None):
        if batch_size % world:
            raise ValueError(f"a batch of {batch_size} does not split over {world} processes")
        self.streams = {"source": source} | ({"target": target} if target is not None else {})
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
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
                                  for item in process_share(self.choose(name, it), self.rank, self.world)])
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
