"""The vdatrain command line: --help, --version, the list of shipped recipes."""

from click.testing import CliRunner

from vdatrain.cli import cli


def test_help_and_version():
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_recipes_lists_the_shipped_recipes_and_shows_one():
    result = CliRunner().invoke(cli, ["recipes"])
    assert result.exit_code == 0
    assert "demo" in result.output and "dlv2-source-viper-cs" in result.output and "segformer-hrda-mic-synthia-bdd" in result.output
    shown = CliRunner().invoke(cli, ["recipes", "--show", "demo"])
    assert shown.exit_code == 0 and "name: demo" in shown.output


def test_fit_names_a_missing_store(tmp_path):
    result = CliRunner().invoke(cli, ["fit", "demo", "--set", f"data_root={tmp_path}"])
    assert result.exit_code == 2 and "source.store:" in result.output and "viper_train.zarr" in result.output


def test_report_tabulates_evaluation_folders(tmp_path):
    import json

    for name, miou in (("a", 20.0), ("b", 27.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"classes": "viper", "miou": {"standard": miou, "unifiedvideoda": miou + 0.1}}))
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "| evaluation | classes | mIoU (standard) | mIoU (unifiedvideoda) |"
    assert lines[2].endswith("| viper | 20.0 | 20.1 |") and lines[3].endswith("| viper | 27.5 | 27.6 |")
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "results.json: missing or not an evaluation result" in missing.output
