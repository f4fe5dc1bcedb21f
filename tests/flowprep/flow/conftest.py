"""Stores ingested from the tiny replicas, for the flow stage."""

import shutil

import pytest
from click.testing import CliRunner

from flowprep.cli import cli


@pytest.fixture(scope="session")
def cs_store(synth_tiny, tmp_path_factory):
    """Cityscapes-Seq val (frankfurt t=294, lindau t=19) with frames t-2..t+1, no flow yet; read-only."""
    out = tmp_path_factory.mktemp("flowstores") / "cs_val.zarr"
    result = CliRunner().invoke(cli, ["ingest", "cityscapes-seq", "--root", str(synth_tiny), "--split", "val",
                                      "--out", str(out), "--offsets=-2,-1,0,1", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def fresh_store(cs_store, tmp_path):
    """A private copy of cs_store to compute flows into."""
    dst = tmp_path / "store.zarr"
    shutil.copytree(cs_store, dst)
    return dst


def flow_cli(*args):
    return CliRunner().invoke(cli, ["flow", *map(str, args)])
