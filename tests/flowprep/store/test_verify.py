"""verify finds every corrupt or missing chunk and names its sample; interrupted and concurrent writes stay valid."""

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from flowprep.store import StoreReader, create_store
from flowprep.store.verify import verify_store

from .conftest import spec_for, write_store


def test_a_fresh_store_verifies(store):
    report = verify_store(store.path)
    assert report.ok
    assert report.complete == {"base": 5, "flow_bwd_1": 5}
    assert report.chunks == 5 * (3 + 1 + 1) + 5 * 2


def test_a_single_flipped_byte_is_found_and_named(store):
    chunk = store.path / "flows/bwd_1/c/3/0/0/0"
    data = bytearray(chunk.read_bytes())
    data[777] ^= 0x01
    chunk.write_bytes(bytes(data))
    report = verify_store(store.path)
    assert [(p.sample_id, p.file, p.what) for p in report.problems] == [
        ("seq003_00030", "flows/bwd_1/c/3/0/0/0", "checksum mismatch (corrupt)")]


def test_truncated_and_missing_chunks_are_found(store):
    truncated = store.path / "frames/c/1/2/0/0/0"
    truncated.write_bytes(truncated.read_bytes()[:-1])
    (store.path / "labels/c/4/0/0/0").unlink()
    problems = {(p.index, p.file): p.what for p in verify_store(store.path).problems}
    assert problems[(1, "frames/c/1/2/0/0/0")].startswith("2879 bytes, expected 2880")
    assert problems[(4, "labels/c/4/0/0/0")] == "missing"
    assert len(problems) == 2


def test_incomplete_samples_are_counted_apart_from_corrupt_ones_and_fail_the_check(tmp_path):
    """A sample never finished (no checksum record) is not corrupt, but the store is not ready: exit 1."""
    from click.testing import CliRunner

    from flowprep.cli import cli

    w = write_store(tmp_path / "s.zarr", samples=[1, 3])
    report = verify_store(w.path)
    assert not report.problems and report.complete["base"] == 2 and report.incomplete["base"] == 3
    assert not report.ok
    result = CliRunner().invoke(cli, ["verify", str(w.path)])
    assert result.exit_code == 1 and "INCOMPLETE base: 3 of 5 samples never finished" in result.stdout
    assert "INCOMPLETE" in result.stdout.strip().splitlines()[-1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


KILLER = textwrap.dedent("""
    import os, signal, sys, zarr
    sys.path.insert(0, {tests!r})
    from conftest import write_store
    calls = 0
    original = zarr.Array.__setitem__
    def setitem(self, key, value):
        global calls
        calls += 1
        if calls == {kill_at}:  # sample 2's labels: its frames are on disk, its record is not
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key, value)
    zarr.Array.__setitem__ = setitem
    write_store({path!r})
""")


def test_a_write_killed_midway_and_rerun_equals_an_uninterrupted_write(tmp_path):
    killed = tmp_path / "killed.zarr"
    # Creating the store writes its 6 coordinate arrays; then each sample is 4 base writes (frames, labels,
    # counts, record) + 3 flow writes.
    script = KILLER.format(tests=str(Path(__file__).parent), kill_at=6 + 2 * 7 + 2, path=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert StoreReader(killed).complete().tolist() == [True, True, False, False, False]
    # debris a kill during zarr's temp-file write would leave
    (killed / "frames/c/2/0/0/0/0.0123abcd.partial").write_bytes(b"half a frame")

    write_store(killed)  # the re-run
    clean = write_store(tmp_path / "clean.zarr")
    assert _files(killed) == _files(clean.path)
    assert verify_store(killed).ok


def _write_half(path, parity):
    # Every process also "creates" the store, as parallel workers of one command would.
    create_store(path, spec_for(6, 24, 40), provenance={"stage": "test", "command": "pytest"})
    write_store(path, n=6, samples=[i for i in range(6) if i % 2 == parity])


def test_two_processes_writing_disjoint_samples_give_a_valid_store(tmp_path):
    path = tmp_path / "shared.zarr"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_half, args=(path, parity)) for parity in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = verify_store(path)
    assert report.ok and report.complete == {"base": 6, "flow_bwd_1": 6}
    reference = write_store(tmp_path / "one.zarr", n=6)
    reader = StoreReader(path)
    for i in range(6):
        np.testing.assert_array_equal(reader.frame(i, -1), reference.frames[i, 1])
        np.testing.assert_array_equal(reader.flow_valid(i, "bwd_1"), reference.valid["bwd_1"][i])
    assert not list(path.rglob("*.partial"))
    assert sorted(os.listdir(path / "flows")) == ["bwd_1", "zarr.json"]  # declared once, not twice
