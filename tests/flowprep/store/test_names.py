"""Sample ids become file names (flow-export, eval pictures, raw paths): an id that would leave its folder is
refused when a store is written, when any store is opened, and when a split file is read."""

import json

import pytest
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.errors import StoreError
from flowprep.ingest.bddvid import parse_bdd_split_file
from flowprep.store import StoreReader, StoreSpec

from .conftest import CLASSES, write_store

BAD = ["../x", "/abs/x", "a\\b", "..", "", "c:x"]


@pytest.mark.parametrize("sid", BAD)
def test_a_store_cannot_be_created_with_an_id_that_is_not_one_file_name(sid):
    with pytest.raises(StoreError, match="not a usable sample id"):
        StoreSpec(dataset="d", split="train", classes=CLASSES, height=4, width=4, sample_ids=["ok", sid])


@pytest.mark.parametrize("sid", ["../escaped", "/tmp/absolute"])
def test_a_tampered_store_is_refused_on_open_and_nothing_is_written_outside(tmp_path, sid):
    written = write_store(tmp_path / "s.zarr", n=2)
    meta = tmp_path / "s.zarr" / "zarr.json"
    data = json.loads(meta.read_text())
    data["attributes"]["vda"]["sample_ids"][0] = sid
    meta.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="not a usable sample id"):
        StoreReader(written.path)
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["flow-export", str(written.path), "--pair", "bwd_1", "--out", str(out)])
    assert result.exit_code == 2 and "not a usable sample id" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "escaped.png").exists() and not list(tmp_path.glob("**/escaped*"))


def test_a_split_file_id_that_would_leave_the_folder_names_the_line(tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("abc-123_307\n../../etc/passwd_307\n")
    with pytest.raises(StoreError, match=r"val.txt:2: '../../etc/passwd' is not a usable sample id"):
        parse_bdd_split_file(split)
