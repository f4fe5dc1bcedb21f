"""The vdatrain command line answers --help and --version."""

from click.testing import CliRunner

from vdatrain.cli import cli


def test_help_and_version():
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output
