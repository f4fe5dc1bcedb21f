"""A store shared by flowprep tests that only read it or copy it."""


import pytest
from click.testing import CliRunner

from flowprep.cli import cli


@pytest.fixture
def tiny_cs_store(synth_tiny, tmp_path):
    """A fresh Cityscapes-Seq val store (2 samples, frames t-2..t) of the tiny replica, no flow."""
    out = tmp_path / "cityscapes-seq_val.zarr"
    result = CliRunner().invoke(cli, ["ingest", "cityscapes-seq", "--root", str(synth_tiny), "--split", "val",
                                      "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out
