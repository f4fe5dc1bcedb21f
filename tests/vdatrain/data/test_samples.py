"""Samples from a store: one crop for frames, label, flows and masks; deterministic; safe in workers."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.store import StoreReader
from vdatrain.data.batches import to_model
from vdatrain.data.geometry import class_ratio_ok
from vdatrain.data.normalise import IMAGENET_MEAN, IMAGENET_STD
from vdatrain.data.samples import SampleSpec, StoreSamples


@pytest.fixture(scope="module")
def store(synth_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "cs_train.zarr"
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("ingest", "cityscapes-seq", "--root", synth_tiny, "--split", "val", "--out", out, "--workers", 1).exit_code == 0
    assert run("flow", out, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    return out


def _spec(store, scale=1.5, **kw):
    return SampleSpec(store=str(store), crop=(48, 80), scale=scale, offsets=(-1, 0), flows=("bwd_1",), margins=True,
                      **{"label_resize": "centre", **kw})


def _sample(ds, k, epoch=0, rare_class=None):
    """Item k as the model sees it: the loader's batch of one, cropped on the device (here the CPU)."""
    return to_model({"s": ds.batch([ds.draw(k, rare_class, epoch=epoch)])}, torch.device("cpu"))["s"]


@pytest.mark.parametrize("scale", [1.5, 1.0, 0.75])
def test_frames_label_flow_and_masks_share_one_crop(store, scale, opencv):
    """The device crops equal the OpenCV oracle (`opencv`, the CPU path before crops moved to the device): the same box, masks bit for bit,
    frames within one grey level (OpenCV rounds to 8 bits, the device keeps the float), flows to float rounding."""
    ds = StoreSamples(_spec(store, scale=scale))
    r = StoreReader(store)
    h, w = 48, 80
    for epoch in range(3):
        for k in range(len(ds)):
            item = _sample(ds, k, epoch)
            box = item["box"][0]
            i = item["index"][0]
            window = box.native_window(*r.resolution)
            assert item["window"] == [window]
            assert item["image"].shape == (1, 2, 3, h, w) and item["image"].dtype == torch.float32
            for f, o in enumerate((-1, 0)):
                frame = opencv.sample(box, r.frame(i, o, window), window).astype(np.float32)
                grey = item["image"][0, f].permute(1, 2, 0).numpy() * IMAGENET_STD + IMAGENET_MEAN
                np.testing.assert_allclose(grey, frame, atol=1.0 + 1e-3)
                if scale == 1.0:  # whole-pixel crops: no resampling, the very values
                    np.testing.assert_allclose(grey, frame, atol=1e-3)
            assert item["label"].dtype == torch.int64
            np.testing.assert_array_equal(item["label"][0].numpy(), opencv.sample(box, r.label(i, 0, window), window, nearest=True))
            np.testing.assert_allclose(item["flow/bwd_1"][0].numpy().transpose(1, 2, 0),
                                       opencv.flow(box, r.flow(i, "bwd_1", window), window), atol=1e-4)
            np.testing.assert_array_equal(item["valid/bwd_1"][0].numpy(),
                                          opencv.sample(box, r.flow_valid(i, "bwd_1", window), window, nearest=True))
            y0, y1, x0, x1 = window
            np.testing.assert_array_equal(item["margin"][0].numpy(),
                                          opencv.sample(box, opencv.margin_mask(r.resolution)[y0:y1, x0:x1], window, nearest=True))


def test_the_loader_copies_native_windows_in_their_stored_form(store):
    ds = StoreSamples(_spec(store))
    r = StoreReader(store)
    b = ds.batch([ds.draw(k, epoch=2) for k in range(2)])
    hw, ww = ds.window_shape
    assert b["image"].shape == (2, 2, hw, ww, 3) and b["image"].dtype == torch.uint8
    assert b["flow/bwd_1"].shape == (2, hw, ww, 2) and b["flow/bwd_1"].dtype == torch.int16
    assert b["label"].dtype == torch.uint8 and b["label"].shape == (2, 48, 80)
    for n, (i, (y0, y1, x0, x1)) in enumerate(zip(b["index"], b["window"])):
        assert y1 - y0 <= hw and x1 - x0 <= ww
        np.testing.assert_array_equal(b["image"][n, 0, :y1 - y0, :x1 - x0].numpy(), r.frame(i, -1, (y0, y1, x0, x1)))
        np.testing.assert_array_equal(b["flow/bwd_1"][n, :y1 - y0, :x1 - x0].numpy(),
                                      r.flow_fixed(i, "bwd_1", (y0, y1, x0, x1)))
        assert not b["image"][n, :, y1 - y0:].any() and not b["flow/bwd_1"][n, :, x1 - x0:].any()


def test_the_same_seed_and_epoch_give_the_same_sample_and_a_new_epoch_a_new_crop(store):
    a, b = StoreSamples(_spec(store, seed=3)), StoreSamples(_spec(store, seed=3))
    assert a.draw(1, epoch=0).box == b.draw(1, epoch=0).box
    assert torch.equal(_sample(a, 1)["image"], _sample(b, 1)["image"])
    assert len({a.draw(1, epoch=epoch).box for epoch in range(6)}) > 1


def test_source_crops_retry_until_no_class_dominates(store):
    ds = StoreSamples(_spec(store, max_class_ratio=0.75))
    for epoch in range(5):
        for k in range(len(ds)):
            assert class_ratio_ok(ds.draw(k, epoch=epoch).label, 0.75)


@pytest.mark.parametrize("retries", [10, 1, 0])
def test_after_every_check_failed_the_next_crop_is_kept_unchecked(store, retries):
    """mmseg's RandomCrop (and the reference's rare class re-crop): after 10 failed checks an 11th crop, drawn
    from the same random stream, is kept without a check; 0 retries: the first crop, unchecked."""
    from vdatrain.data.geometry import random_box

    ds = StoreSamples(_spec(store, max_class_ratio=0.01, crop_retries=retries, seed=7))  # no crop can pass
    r = StoreReader(store)
    for k in range(len(ds)):
        rng = np.random.default_rng([7, 3, k])
        boxes = [random_box(rng, r.resolution, 1.5, (48, 80), 0.5) for _ in range(retries + 1)]
        assert ds.draw(k, epoch=3).box == boxes[-1]


def test_rare_class_crops_are_redrawn_until_they_hold_enough_of_the_class(store):
    spec = dict(crop=(24, 24), scale=1.0, offsets=(0,), flows=(), margins=False, seed=4)
    plain = StoreSamples(SampleSpec(store=str(store), **spec))
    rare = StoreSamples(SampleSpec(store=str(store), rare_min_pixels=40, rare_retries=10, **spec))
    counts = rare.class_counts()
    assert counts.shape == (len(rare), 19) and (counts.sum(1) > 0).all()
    k = 0
    c = int(np.argsort(counts[k])[-3])  # a present but not dominant class of sample k
    hits = [np.count_nonzero(rare.draw(k, c, epoch=e).label == c) > 40 for e in range(30)]
    plain_hits = [np.count_nonzero(plain.draw(k, epoch=e).label == c) > 40 for e in range(30)]
    assert sum(hits) > sum(plain_hits) and sum(hits) >= 20
