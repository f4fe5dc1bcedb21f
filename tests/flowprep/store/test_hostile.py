"""A store made hostile or careless is one line naming the file (exit 2 for a store that is not what it claims,
exit 1 for a verify that finds damage), in bounded memory and time: declared shapes and chunks are checked
before anything is allocated, only regular files inside the store are read or written, compressed chunks are
decoded into a buffer of the layout's size."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.errors import StoreError
from flowprep.store import StoreReader, StoreWriter
from flowprep.store.layout import ATTRS_KEY

from .conftest import write_store


def _edit_json(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _one_line(args, code):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def _set(key, value):
    def change(meta):
        node = meta
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
    return change


@pytest.mark.parametrize("change,message", [
    (_set(("shape",), [5, 3, 10**9, 10**9, 3]), "are not this layout's"),
    (lambda m: (_set(("shape",), [5, 3, 10**5, 10**5, 3])(m),
                _set(("chunk_grid", "configuration", "chunk_shape"), [1, 1, 10**5, 10**5, 3])(m)), "is over 2 GiB"),
    (lambda m: (_set(("shape",), [5, 3, 48, 40, 3])(m),
                _set(("chunk_grid", "configuration", "chunk_shape"), [1, 1, 48, 40, 3])(m)),
     "does not match the store's attributes"),
    (_set(("chunk_grid", "configuration", "chunk_shape"), [1, 0, 24, 40, 3]), "chunk_shape: expected a list"),
    (_set(("shape",), "big"), "shape: expected a list of integers"),
    (lambda m: m.pop("shape"), "shape: expected a list of integers"),
    (_set(("chunk_grid", "configuration", "chunk_shape"), [1, 3, 24, 40, 3]), "are not this layout's"),
])
def test_a_declared_shape_or_chunk_that_lies_is_refused_before_anything_is_allocated(tmp_path, change, message):
    w = write_store(tmp_path / "s.zarr")
    _edit_json(w.path / "frames" / "zarr.json", change)
    for command in (["verify", w.path], ["inspect", w.path]):
        assert message in _one_line(command, 2)


def test_a_resolution_that_lies_or_a_pair_name_that_climbs_out_is_refused(tmp_path):
    w = write_store(tmp_path / "s.zarr")
    root_meta = w.path / "zarr.json"
    original = root_meta.read_text()
    _edit_json(root_meta, lambda m: m["attributes"][ATTRS_KEY].__setitem__("resolution", [48, 80]))
    assert "does not match the store's attributes" in _one_line(["inspect", w.path], 2)
    root_meta.write_text(original)
    _edit_json(root_meta, lambda m: m["attributes"][ATTRS_KEY]["flows"].__setitem__(
        "../outside", m["attributes"][ATTRS_KEY]["flows"]["bwd_1"]))
    assert "flow pair '../outside' is not a pair name" in _one_line(["inspect", w.path], 2)


def test_chunks_that_are_fifos_devices_or_links_out_of_the_store_are_never_read(tmp_path):
    w = write_store(tmp_path / "s.zarr")
    chunk = w.path / "frames" / "c" / "0" / "0" / "0" / "0" / "0"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(chunk.read_bytes())
    for make, message in ((lambda: os.symlink("/dev/zero", chunk), "leads outside the store"),
                          (lambda: os.mkfifo(chunk), "not a regular file"),
                          (lambda: os.symlink(elsewhere, chunk), "leads outside the store")):
        chunk.unlink()
        make()
        with pytest.raises(StoreError, match=message):
            StoreReader(w.path).frame(0, -2)
        output = _one_line(["verify", w.path], 1)  # verify names the chunk and goes on (no hang on the FIFO)
        assert "frames/c/0/0/0/0/0" in output and message in output
    os.symlink("/dev/zero", w.path / "zarr.json.bomb")
    (w.path / "zarr.json").unlink()
    os.symlink(w.path / "zarr.json.bomb", w.path / "zarr.json")
    assert "leads outside the store" in _one_line(["inspect", w.path], 2)


def test_a_flows_folder_linked_out_of_the_store_takes_no_write(tmp_path):
    w = write_store(tmp_path / "s.zarr")
    outside = tmp_path / "outside"
    os.rename(w.path / "flows", outside)
    os.symlink(outside, w.path / "flows")
    before = sorted(p.name for p in outside.rglob("*"))
    with pytest.raises(StoreError, match="leads outside the store"):
        StoreWriter(w.path).write_flow(0, "bwd_1", np.zeros((24, 40, 2), np.float32))
    assert sorted(p.name for p in outside.rglob("*")) == before


def test_a_compressed_chunk_that_decodes_to_hundreds_of_megabytes_is_refused_in_bounded_memory(tmp_path):
    """A zstd frame of 256 MiB of zeros (a few kB on disk) in a 960-byte label chunk's place: one line naming the
    file, and the reading process never holds the 256 MiB (it decodes into a buffer of the chunk's size)."""
    from numcodecs import Zstd

    w = write_store(tmp_path / "z.zarr", compress=True)
    label_chunk = w.path / "labels" / "c" / "0" / "0" / "0" / "0"
    label_chunk.write_bytes(Zstd(level=3).encode(np.zeros(256 << 20, np.uint8)))
    script = ("from flowprep.store import StoreReader\n"
              "try:\n"
              f"    StoreReader({str(w.path)!r}).label(0)\n"
              "except Exception as e:\n"
              "    print(type(e).__name__, e)\n"
              # VmHWM: this process's peak resident memory (ru_maxrss would include the parent's at fork)
              "print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("StoreError") and "labels/c/0/0/0/0" in lines[0], out.stdout + out.stderr
    assert int(lines[-1]) < 200 << 10  # KiB: the process stayed far below the 256 MiB the frame declares
