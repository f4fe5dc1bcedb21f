"""A store is a plain zarr v3 store that xarray opens whole: labelled dimensions, coordinates, flows decoded
to pixels by CF's scale_factor, consolidated metadata that every writer keeps current."""

import numpy as np
import xarray as xr
import zarr
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.store import StoreReader


def flow(*args):
    return CliRunner().invoke(cli, ["flow", *map(str, args)])


def test_open_datatree_gives_the_readers_data_with_coordinates(tiny_cs_store):
    assert flow(tiny_cs_store, "--model", "dis", "--pairs", "bwd:1,bwd:2").exit_code == 0
    r = StoreReader(tiny_cs_store)
    tree = xr.open_datatree(tiny_cs_store, engine="zarr")  # consolidated: one read of the root zarr.json
    root = tree.to_dataset()
    assert list(root["sample"].values) == r.sample_ids and list(root["frame"].values) == r.frame_offsets
    assert list(root["class"].values) == r.classes
    np.testing.assert_array_equal(root["frames"].sel(sample=r.sample_ids[1], frame=-1).values, r.frame(1, -1))
    np.testing.assert_array_equal(root["labels"].isel(sample=0, label_frame=0).values, r.label(0))
    flows = tree["flows"]  # int16 on disk, pixels through scale_factor; the sample coordinate is inherited
    assert flows["bwd_2"].attrs["units"] == "px" and flows["bwd_2"].dtype.kind == "f"
    for i, sid in enumerate(r.sample_ids):
        np.testing.assert_array_equal(flows["bwd_2"].sel(sample=sid).values, r.flow(i, "bwd_2"))
        np.testing.assert_array_equal(tree["flow_valid"]["bwd_1"].sel(sample=sid).values, r.flow_valid(i, "bwd_1"))
    assert set(tree["_checksums"].to_dataset().data_vars) == {"base", "flow_bwd_1", "flow_bwd_2"}


def test_a_store_the_user_consolidated_takes_another_flow_pair(tiny_cs_store):
    """xarray advises consolidating on every open; a writer that read the consolidated copy missed new arrays."""
    assert flow(tiny_cs_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    zarr.consolidate_metadata(str(tiny_cs_store))
    result = flow(tiny_cs_store, "--model", "dis", "--pairs", "bwd:2")
    assert result.exit_code == 0, result.output
    r = StoreReader(tiny_cs_store)
    assert r.complete("flow_bwd_2").all()
    assert CliRunner().invoke(cli, ["verify", str(tiny_cs_store), "-q"]).exit_code == 0
    consolidated = xr.open_datatree(tiny_cs_store, engine="zarr", consolidated=True)
    assert set(consolidated["flows"].to_dataset().data_vars) == {"bwd_1", "bwd_2"}
