"""Samples from a store: one crop for frames, label, flows and masks; deterministic; safe in workers."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.store import StoreReader
from vdatrain.data.geometry import CropBox, class_ratio_ok
from vdatrain.data.samples import IMAGENET_MEAN, IMAGENET_STD, SampleSpec, StoreSamples, normalise_batch


@pytest.fixture(scope="module")
def store(synth_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "cs_train.zarr"
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("ingest", "cityscapes-seq", "--root", synth_tiny, "--split", "val", "--out", out, "--workers", 1).exit_code == 0
    assert run("flow", out, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    return out


def _spec(store, **kw):
    return SampleSpec(store=str(store), crop=(48, 80), scale=1.5, offsets=(-1, 0), flows=("bwd_1",), margins=True, **kw)


def test_frames_label_flow_and_masks_share_one_crop(store):
    ds = StoreSamples(_spec(store))
    r = StoreReader(store)
    for k in range(len(ds)):
        item = ds[k]
        box = CropBox(*item["box"])
        i = item["index"]
        window = box.native_window(*r.resolution)
        y0, y1, x0, x1 = window
        # frames leave the loader as stored, uint8 (h, w, 3): a quarter of float32's bytes, no CPU arithmetic
        assert item["image"].shape == (2, 48, 80, 3) and item["image"].dtype == torch.uint8
        assert item["label"].shape == (48, 80)
        frame = box.sample(r.frame(i, -1, window), window)
        np.testing.assert_array_equal(item["image"][0].numpy(), frame)
        # the training step normalises them on its device: the values the CPU normalisation gave, bit for bit
        expected = torch.from_numpy(((frame - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).astype(np.float32))
        assert torch.equal(normalise_batch(item["image"])[0], expected)
        np.testing.assert_array_equal(item["label"].numpy(), box.sample(r.label(i, 0, window), window, nearest=True))
        np.testing.assert_allclose(item["flow/bwd_1"].numpy().transpose(1, 2, 0), box.flow(r.flow(i, "bwd_1", window), window))
        assert item["valid/bwd_1"].dtype == torch.bool and item["margin"].shape == (48, 80)


def test_the_same_seed_and_epoch_give_the_same_sample_and_a_new_epoch_a_new_crop(store):
    a, b = StoreSamples(_spec(store, seed=3)), StoreSamples(_spec(store, seed=3))
    assert a[1]["box"] == b[1]["box"] and torch.equal(a[1]["image"], b[1]["image"])
    boxes = set()
    for epoch in range(6):
        boxes.add(a.draw(1, epoch=epoch)["box"])
    assert len(boxes) > 1


def test_source_crops_retry_until_no_class_dominates(store):
    ds = StoreSamples(_spec(store, max_class_ratio=0.75))
    for epoch in range(5):
        for k in range(len(ds)):
            assert class_ratio_ok(ds.draw(k, epoch=epoch)["label"].numpy(), 0.75)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_samples(store, method):
    ds = StoreSamples(_spec(store, seed=1))
    ds[0]  # the parent has maps open before the workers start
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context=method)
    batch = next(iter(loader))
    torch.testing.assert_close(batch["image"][1], ds[1]["image"])
    assert batch["flow/bwd_1"].shape == (2, 2, 48, 80)


def test_rare_class_crops_are_redrawn_until_they_hold_enough_of_the_class(store):
    spec = dict(crop=(24, 24), scale=1.0, offsets=(0,), flows=(), margins=False, seed=4)
    plain = StoreSamples(SampleSpec(store=str(store), **spec))
    rare = StoreSamples(SampleSpec(store=str(store), rare_min_pixels=40, rare_retries=10, **spec))
    counts = rare.class_counts()
    assert counts.shape == (len(rare), 19) and (counts.sum(1) > 0).all()
    k = 0
    c = int(np.argsort(counts[k])[-3])  # a present but not dominant class of sample k
    hits = [np.count_nonzero(rare.draw(k, c, epoch=e)["label"].numpy() == c) > 40 for e in range(30)]
    plain_hits = [np.count_nonzero(plain.draw(k, epoch=e)["label"].numpy() == c) > 40 for e in range(30)]
    assert sum(hits) > sum(plain_hits) and sum(hits) >= 20
