"""The flowprep command line: help, version, inspect, verify and exit codes that scripts can trust."""

import json
import subprocess
import sys

from click.testing import CliRunner

from flowprep.cli import cli

from .store.conftest import write_store


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_help_and_version():
    assert run("--help").exit_code == 0
    result = run("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output
    for command in ("inspect", "verify"):
        assert run(command, "--help").exit_code == 0


def test_help_does_not_import_heavy_modules():
    code = "import sys; from flowprep.cli import main; sys.argv=['flowprep','--help']\n" \
           "try: main()\nexcept SystemExit: pass\n" \
           "print(sorted(m for m in ('torch', 'zarr', 'ptlflow', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_inspect_describes_the_store(tmp_path):
    w = write_store(tmp_path / "s.zarr", samples=[0, 1, 2])
    result = run("inspect", str(w.path))
    assert result.exit_code == 0, result.output
    assert "synthetic / train" in result.output
    assert "base        3 complete, 2 incomplete" in result.output
    assert "bwd_1       t+0 -> t-1 (backward, k=1" in result.output
    d = json.loads(run("inspect", "--json", str(w.path)).output)
    frames = next(a for a in d["arrays"] if a["path"] == "frames")
    assert frames["shape"] == [5, 3, 24, 40, 3] and frames["zero_copy"] and frames["files"] == 1 + 3 * 3


def test_verify_exit_codes(tmp_path):
    w = write_store(tmp_path / "s.zarr")
    ok = run("verify", str(w.path))
    assert ok.exit_code == 0 and ok.stdout.startswith("OK")
    chunk = w.path / "labels/c/2/0/0/0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0x10
    chunk.write_bytes(bytes(data))
    bad = run("verify", str(w.path))
    assert bad.exit_code == 1
    assert "CORRUPT sample 'seq002_00020'" in bad.output and "labels/c/2/0/0/0" in bad.output


def test_a_missing_store_is_a_one_line_error_with_status_2(tmp_path):
    result = run("inspect", str(tmp_path / "nope.zarr"))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.zarr'}: no store here (not a directory)"


def test_flow_show_creates_its_folder_and_a_picture_it_cannot_write_is_an_error(tmp_path):
    store = write_store(tmp_path / "s.zarr", n=2)
    out = tmp_path / "new" / "folder" / "flow.png"
    ok = CliRunner().invoke(cli, ["flow-show", str(store.path), "--sample", "seq000_00000", "--out", str(out)])
    assert ok.exit_code == 0 and out.is_file(), ok.output
    (tmp_path / "a-file").write_text("")
    bad = CliRunner().invoke(cli, ["flow-show", str(store.path), "--sample", "seq000_00000",
                                   "--out", str(tmp_path / "a-file" / "flow.png")])
    assert bad.exit_code == 1 and "a-file" in bad.output and "Traceback" not in bad.output  # environment
    assert len(bad.output.strip().splitlines()) == 1
    named = CliRunner().invoke(cli, ["flow-show", str(store.path), "--sample", "seq000_00000",
                                     "--out", str(tmp_path / "flow.txt")])
    assert named.exit_code == 2 and "not an image file name" in named.output  # the user's mistake


def test_an_unknown_flow_model_is_named_as_unknown(tmp_path):
    store = write_store(tmp_path / "s.zarr", n=2)
    result = CliRunner().invoke(cli, ["flow", str(store.path), "--model", "nosuch"])
    assert result.exit_code == 2 and "unknown flow model 'nosuch'" in result.output and "needs weights" not in result.output
