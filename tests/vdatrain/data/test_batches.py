"""Iteration batches: a pure function of (seed, iteration, process); sharded without overlap; any workers."""

import pytest
import torch

from vdatrain.data.batches import IterationBatches, batch_indices, loader, to_model
from vdatrain.data.samples import SampleSpec, StoreSamples


@pytest.fixture(scope="module")
def stores(tiny_store):
    return tiny_store("viper", "train"), tiny_store("cityscapes-seq", "val")


def _batches(stores, rank=0, world=1, batch=4):
    source = StoreSamples(SampleSpec(store=str(stores[0]), crop=(32, 48), max_class_ratio=0.75, seed=3))
    target = StoreSamples(SampleSpec(store=str(stores[1]), crop=(32, 48), labels=False, seed=3))
    return IterationBatches(source, batch, seed=3, rank=rank, world=world, target=target)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for stream in a:
        assert a[stream]["id"] == b[stream]["id"]
        assert a[stream]["box"] == b[stream]["box"]
        for key, value in a[stream].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[stream][key]), (stream, key)


def test_every_item_once_per_pass_and_fresh_orders_per_pass():
    first = [i for it in range(5) for i in batch_indices(1, it, 2, 10)]
    second = [i for it in range(5, 10) for i in batch_indices(1, it, 2, 10)]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert batch_indices(1, 7, 4, 10) == batch_indices(1, 7, 4, 10)
    assert batch_indices(1, 0, 4, 10, stream=0) != batch_indices(1, 0, 4, 10, stream=1)


def test_an_iteration_has_source_and_target_batches(stores):
    batches = _batches(stores)
    b = batches[3]
    hw, ww = batches.streams["source"].window_shape
    assert b["source"]["image"].shape == (4, 1, hw, ww, 3) and b["source"]["image"].dtype == torch.uint8
    assert b["source"]["label"].shape == (4, 32, 48) and b["source"]["label"].dtype == torch.uint8
    assert "label" not in b["target"]
    model = to_model(b, torch.device("cpu"))  # what the training step hands the model
    assert model["source"]["image"].shape == (4, 1, 3, 32, 48) and model["source"]["image"].dtype == torch.float32
    assert model["target"]["image"].shape == (4, 1, 3, 32, 48)
    assert torch.equal(model["source"]["label"], b["source"]["label"].long())


def test_processes_get_disjoint_shares_of_the_global_batch(stores):
    whole = _batches(stores)[5]
    shares = [_batches(stores, rank=r, world=2)[5] for r in range(2)]
    for stream in ("source", "target"):
        assert shares[0][stream]["id"] + shares[1][stream]["id"] == whole[stream]["id"]
        assert torch.equal(torch.cat([s[stream]["image"] for s in shares]), whole[stream]["image"])


def test_a_batch_that_does_not_split_is_an_error_naming_the_key(stores):
    from vdatrain.distributed import Dist
    from vdatrain.recipe import RecipeError

    with pytest.raises(RecipeError, match="train.batch_size: 3 does not split over 2 processes"):
        Dist(rank=0, world=2).check_batch(3)
    with pytest.raises(ValueError, match="a batch of 3 does not split over 2 processes"):
        _batches(stores, rank=0, world=2, batch=3)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_processes_yield_the_batches_of_the_main_process(stores, context):
    batches = _batches(stores)
    for it, got in enumerate(loader(batches, 2, 5, workers=2, context=context), 2):
        _same(got, batches[it])
