"""`flowprep flow`: DIS flow against exact truth, stored encoding, warping, shards, resume, weights errors."""

import signal

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow.job import default_pairs, parse_pairs, parse_shard, work_items
from flowprep.flow.validity import sample
from flowprep.store import StoreReader
from flowprep.store.verify import verify_store

from .conftest import flow_cli


def test_pair_specs():
    assert parse_pairs("bwd:1,fwd:2,bwd:1@-1") == [(0, -1), (0, 2), (-1, -2)]
    assert default_pairs([-2, -1, 0]) == [(0, -1), (-1, -2)]
    assert default_pairs([-4, -2, 0]) == [(0, -2), (-2, -4)]
    with pytest.raises(FlowprepError, match="bwd:K or fwd:K"):
        parse_pairs("back:1")
    with pytest.raises(FlowprepError, match="I/N"):
        parse_shard("4/4")


def _epe(flow, truth, mask):
    return float(np.linalg.norm(flow - truth, axis=-1)[mask].mean())


def test_dis_flow_is_close_to_the_exact_truth(fresh_store, synth_tiny):
    result = flow_cli(fresh_store, "--model", "dis", "--pairs", "bwd:1,bwd:2,fwd:1")
    assert result.exit_code == 0, result.output
    r = StoreReader(fresh_store)
    assert sorted(r.flow_pairs) == ["bwd_1", "bwd_2", "fwd_1"]
    flagged = {True: [0, 0], False: [0, 0]}  # truly occluded? -> [invalid pixels, pixels], above the hood
    for i, sid in enumerate(r.sample_ids):
        truth = np.load(synth_tiny / f"_truth/cityscapes-seq/val/{sid}.npz")
        for pair, key in (("bwd_1", "0_-1"), ("bwd_2", "0_-2"), ("fwd_1", "0_1")):
            gt, occluded = truth[f"flow_{key}"], truth[f"occ_{key}"]
            flow, valid = r.flow(i, pair), r.flow_valid(i, pair)
            judged = valid & ~occluded
            # Thresholds: DIS on 128x64 frames with sensor noise. Over all judged pixels the error stays
            # under 1.5 px (measured 0.4-1.1, the largest at k=2). Where things move by more than a pixel (1.5-3.5 px on average here) DIS errs by
            # about 1 px whatever its settings (measured: 0.38-0.66 of the no-motion error), so it must
            # beat assuming no motion by a quarter.
            assert _epe(flow, gt, judged) < 1.5
            moving = judged & (np.linalg.norm(gt, axis=-1) > 1)
            assert _epe(flow, gt, moving) < 0.75 * _epe(np.zeros_like(gt), gt, moving)
            rows = int(0.82 * gt.shape[0])
            for occ in (True, False):
                m = occluded[:rows] == occ
                flagged[occ][0] += int((~valid[:rows] & m).sum())
                flagged[occ][1] += int(m.sum())
    # Validity tracks occlusion: truly occluded pixels are flagged far more often than visible ones.
    # (DIS's smooth flow hides thin occlusion slivers from the forward-backward check; pixels leaving
    # the frame are caught by the in-frame test. Measured here: about 12% vs 3%.)
    assert flagged[True][0] / flagged[True][1] > 3 * flagged[False][0] / flagged[False][1]
    assert verify_store(fresh_store).ok


def test_stored_flow_warps_frame_t_minus_k_onto_frame_t(fresh_store):
    assert flow_cli(fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    r = StoreReader(fresh_store)
    for i in range(len(r)):
        flow, valid = r.flow(i, "bwd_1"), r.flow_valid(i, "bwd_1")
        t, t1 = r.frame(i, 0).astype(np.float32), r.frame(i, -1).astype(np.float32)
        warped = sample(t1, flow)
        moving = valid & (np.linalg.norm(flow, axis=-1) > 1)  # elsewhere sensor noise dominates both errors
        err_warped = np.abs(warped - t).mean(-1)[moving].mean()
        err_still = np.abs(t1 - t).mean(-1)[moving].mean()
        assert err_warped < 0.8 * err_still


def test_ego_vehicle_rows_are_invalid_on_cityscapes(fresh_store):
    assert flow_cli(fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    valid = StoreReader(fresh_store).flow_valid(0, "bwd_1")
    assert not valid[int(0.82 * valid.shape[0]) + 1:].any()


def test_shards_cover_every_item_exactly_once(cs_store):
    r = StoreReader(cs_store)
    pairs = ["bwd_1", "bwd_2", "fwd_1"]
    everything = work_items(r, pairs)
    shards = [work_items(r, pairs, (k, 4)) for k in range(4)]
    assert sorted(item for s in shards for item in s) == sorted(everything)
    assert sum(len(s) for s in shards) == len(everything) == 2 * 3


@pytest.mark.parametrize("launch", [
    # torchrun, 2 nodes x 3 processes
    [{"RANK": str(r), "WORLD_SIZE": "6", "LOCAL_RANK": str(r % 3)} for r in range(6)],
    # a SLURM array 4-7 (min 4, count 4), one task each
    [{"SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "4",
      "SLURM_NTASKS": "1", "SLURM_PROCID": "0"} for t in range(4, 8)],
    # a SLURM array of 2 tasks, each running 3 srun tasks
    [{"SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_NTASKS": "3", "SLURM_PROCID": str(p)}
     for t in range(2) for p in range(3)],
    # srun with 5 tasks, no array
    [{"SLURM_NTASKS": "5", "SLURM_PROCID": str(p)} for p in range(5)],
], ids=["torchrun", "slurm-array", "slurm-array-x-srun", "srun"])
def test_shard_auto_from_the_scheduler_covers_every_item_exactly_once(cs_store, launch):
    r = StoreReader(cs_store)
    pairs = ["bwd_1", "bwd_2", "fwd_1"]
    shards = [parse_shard("auto", env) for env in launch]
    assert sorted(i for i, _ in shards) == list(range(len(launch))) and {n for _, n in shards} == {len(launch)}
    items = [item for shard in shards for item in work_items(r, pairs, shard)]
    assert sorted(items) == sorted(work_items(r, pairs)) and len(items) == len(set(items))
    assert parse_shard("auto", {}) == (0, 1)  # no scheduler: the whole store


def test_shard_auto_is_logged_and_two_torchrun_ranks_fill_the_store(fresh_store):
    from click.testing import CliRunner

    from flowprep.cli import cli

    for rank in (0, 1):
        result = CliRunner().invoke(cli, ["flow", str(fresh_store), "--model", "dis", "--pairs", "bwd:1",
                                          "--shard", "auto"], env={"RANK": str(rank), "WORLD_SIZE": "2"})
        assert result.exit_code == 0, result.output
        assert f"shard {rank}/2 (torchrun: RANK {rank} of WORLD_SIZE 2)" in result.stderr
    assert StoreReader(fresh_store).complete("flow_bwd_1").all()


def test_two_shards_and_two_workers_fill_the_store(fresh_store):
    for k in (0, 1):
        result = flow_cli(fresh_store, "--model", "dis", "--pairs", "bwd:1,fwd:1", "--shard", f"{k}/2", "--workers", 2)
        assert result.exit_code == 0, result.output
    r = StoreReader(fresh_store)
    assert r.complete("flow_bwd_1").all() and r.complete("flow_fwd_1").all()


def test_a_killed_flow_job_resumes(fresh_store, run_killed):
    proc = run_killed("flowprep.store.writer:StoreWriter.write_flow", 3,
                      "flow", fresh_store, "--model", "dis", "--pairs", "bwd:1,bwd:2")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    r = StoreReader(fresh_store)
    assert r.complete("flow_bwd_1").sum() + r.complete("flow_bwd_2").sum() == 2
    result = flow_cli(fresh_store, "--model", "dis", "--pairs", "bwd:1,bwd:2")
    assert result.exit_code == 0 and "2 flows computed now" in result.output
    assert verify_store(fresh_store).ok
    assert StoreReader(fresh_store).complete("flow_bwd_2").all()


def test_missing_checkpoint_is_a_clear_error_before_any_work(fresh_store, tmp_path):
    result = flow_cli(fresh_store, "--model", "flowformer", "--ckpt", tmp_path / "nope.ckpt")
    assert result.exit_code == 2
    assert "nope.ckpt: no such checkpoint file (and not a flowformer checkpoint name: chairs, kitti, sintel, things)" in result.output
    assert StoreReader(fresh_store).flow_pairs == {}  # nothing declared, nothing computed
    result = flow_cli(fresh_store, "--model", "flowformer", "--ckpt", "things")
    assert result.exit_code == 2 and "is not in the local cache" in result.output
    result = flow_cli(fresh_store, "--model", "flowformer")
    assert result.exit_code == 2 and "needs weights" in result.output


def test_incompatible_checkpoint_lists_the_keys(fresh_store, tmp_path):
    import torch

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, bad)
    result = flow_cli(fresh_store, "--model", "flowformer", "--ckpt", bad)
    assert result.exit_code == 2
    assert "incompatible with flowformer: missing keys" in result.output and "unexpected keys 1: encoder.weight" in result.output


def test_ptlflow_tiles_with_a_small_overlap_run_end_to_end(fresh_store):
    # the weights pre-check must use the requested overlap (a 64 px default would refuse 48x64 tiles)
    result = flow_cli(fresh_store, "--model", "flowformer", "--random-weights", "--tile", "48x64", "--overlap", 16,
                      "--pairs", "bwd:1", "--no-consistency")
    assert result.exit_code == 0, result.output
    assert StoreReader(fresh_store).complete("flow_bwd_1").all()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_gpus_that_are_not_there_is_a_clear_error(fresh_store):
    result = flow_cli(fresh_store, "--gpus", 1)
    assert result.exit_code == 2 and "--gpus 1: only 0 CUDA device(s) visible" in result.output


def test_shard_auto_refuses_an_array_task_outside_its_range():
    """An array with a step (--array=0-10:2) numbers tasks that do not map onto 0..count-1: say so."""
    with pytest.raises(FlowprepError, match="SLURM array task 9 is not within 0..3"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})


@pytest.mark.parametrize("workers", [1, 2])
def test_writing_on_a_thread_while_the_engine_runs_gives_the_same_store(cs_store, tmp_path, workers):
    """The GPU path's overlap (validity, encoding and the write on a thread, the next batch already computing),
    exercised here with DIS: every flow and mask equals the sequential job's, and every item is written."""
    import shutil

    from flowprep.flow.job import EngineSpec, run_flow

    stores = {}
    for overlap in (False, True):
        stores[overlap] = dst = tmp_path / f"overlap{overlap}.zarr"
        shutil.copytree(cs_store, dst)
        run_flow(str(dst), EngineSpec("dis"), [(0, -1)], workers=workers, batch=2, progress=False, overlap=overlap)
    a, b = StoreReader(stores[False]), StoreReader(stores[True])
    assert b.complete("flow_bwd_1").all()
    for i in range(len(a)):
        np.testing.assert_array_equal(a.flow_fixed(i, "bwd_1"), b.flow_fixed(i, "bwd_1"))
        np.testing.assert_array_equal(a.flow_valid(i, "bwd_1"), b.flow_valid(i, "bwd_1"))


def test_a_write_that_fails_on_the_thread_fails_the_job(fresh_store, monkeypatch):
    from flowprep.flow.job import EngineSpec, run_flow
    from flowprep.store import StoreWriter

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StoreWriter, "write_flow", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run_flow(str(fresh_store), EngineSpec("dis"), [(0, -1)], workers=1, progress=False, overlap=True)


def test_a_job_whose_items_did_not_reach_the_store_fails_and_says_a_rerun_resumes(fresh_store, monkeypatch):
    """The job checks the store, not its workers' word: a write that silently did nothing is reported."""
    from flowprep.flow.job import EngineSpec, run_flow
    from flowprep.store import StoreWriter

    monkeypatch.setattr(StoreWriter, "write_flow", lambda self, *a, **k: None)
    with pytest.raises(FlowprepError, match=r"flows were not written .*run the same command again"):
        run_flow(str(fresh_store), EngineSpec("dis"), [(0, -1)], workers=1, progress=False)
