"""Stores ingested from the tiny synthetic replicas, shared by the vdatrain tests (read-only)."""

import pytest
from click.testing import CliRunner

from flowprep.cli import cli as flowprep_cli


@pytest.fixture(scope="session")
def tiny_store(synth_tiny, tmp_path_factory):
    """tiny_store(dataset, split, offsets="-1,0,1", pairs="bwd:1") -> path of an ingested store, made once per
    session for each set of arguments (flow by DIS when `pairs` is given)."""
    made = {}

    def make(dataset: str, split: str, offsets: str | None = None, pairs: str | None = None):
        key = (dataset, split, offsets, pairs)
        if key not in made:
            out = tmp_path_factory.mktemp("stores") / f"{dataset}_{split}.zarr"
            args = ["ingest", dataset, "--root", str(synth_tiny), "--split", split, "--out", str(out), "--workers", "1"]
            result = CliRunner().invoke(flowprep_cli, args + (["--offsets", offsets] if offsets else []))
            assert result.exit_code == 0, result.output
            if pairs:
                result = CliRunner().invoke(flowprep_cli, ["flow", str(out), "--model", "dis", "--pairs", pairs])
                assert result.exit_code == 0, result.output
            made[key] = out
        return made[key]

    return make
