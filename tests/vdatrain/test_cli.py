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
    table4 = CliRunner().invoke(cli, ["recipes", "dlv2-hrda-*-viper-cs"])
    names = [line.split()[0] for line in table4.output.splitlines()]
    assert table4.exit_code == 0 and "dlv2-hrda-mom-viper-cs" in names
    assert all(n.startswith("dlv2-hrda-") and n.endswith("-viper-cs") for n in names)
    none = CliRunner().invoke(cli, ["recipes", "nosuch-*"])
    assert none.exit_code == 2 and "no shipped recipe matches nosuch-*" in none.output


def test_fit_names_a_missing_store(tmp_path):
    result = CliRunner().invoke(cli, ["fit", "demo", "--set", f"data_root={tmp_path}"])
    assert result.exit_code == 2 and "source.store:" in result.output and "viper_train.zarr" in result.output


def test_report_lays_out_methods_by_shift_and_writes_table_csv_and_chart(tmp_path):
    import json

    import cv2

    runs = [("src", "Source", "viper -> cityscapes-seq", 20.0), ("ad", "HRDA", "viper -> cityscapes-seq", 27.5),
            ("src-b", "Source", "viper -> bddvid", 14.0), ("src-b2", "Source", "viper -> bddvid", 16.0)]
    for folder, label, shift, miou in runs:
        (tmp_path / folder / "eval").mkdir(parents=True)
        (tmp_path / folder / "eval" / "results.json").write_text(json.dumps({
            "classes": "viper", "miou": {"standard": miou + 0.1, "unifiedvideoda": miou},
            "run": {"label": label, "shift": shift, "protocol": "unifiedvideoda"},
            "per_class": {"unifiedvideoda": {"road": miou + 60, "car": miou + 30, "bus": None}},
            "temporal": {"bwd_1": {"standard": {"predconsis_miou": miou + 49}, "unifiedvideoda": {"predconsis_miou": miou + 50}}}}))
    result = CliRunner().invoke(cli, ["report", *(str(tmp_path / r[0]) for r in runs), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "| method | viper -> cityscapes-seq | viper -> bddvid |"
    # two seeds of one method on one shift: their mean and spread, not the last one read
    assert lines[2] == "| Source | 20.0 | 15.0 ± 1.0 (n=2) |" and lines[3] == "| HRDA | 27.5 | – |"
    assert "| HRDA | viper -> cityscapes-seq | 77.5 |" in lines
    csv_lines = (tmp_path / "t" / "table.csv").read_text().splitlines()
    assert csv_lines[0] == ("method,shift,protocol,miou,predconsis_miou/unifiedvideoda/bwd_1,"
                            "predconsis_miou/standard/bwd_1,folder")
    assert csv_lines[2].startswith("HRDA,viper -> cityscapes-seq,unifiedvideoda,27.50,77.50,76.50,")
    assert "PL-PredConsis-mIoU (temporal consistency of predictions), unifiedvideoda protocol:" in result.output
    assert "PL-PredConsis-mIoU (temporal consistency of predictions), standard protocol:" in result.output
    chart = cv2.imread(str(tmp_path / "t" / "miou.png"))
    assert chart is not None and chart.shape[0] > 300 and (chart != 255).any()
    for shift in ("viper_to_cityscapes-seq", "viper_to_bddvid"):
        assert cv2.imread(str(tmp_path / "t" / f"per_class_{shift}.png")) is not None
    assert not (tmp_path / "t" / "curves.png").exists()  # no run folder with a log among them
    (tmp_path / "ad" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"iteration": 1, "loss": 2.0, "loss/source": 1.5, "loss/mix": 0.5, "pseudo_weight": 0.2},
        {"iteration": 2, "loss": 1.5, "loss/source": 1.1, "loss/mix": 0.4, "pseudo_weight": 0.4},
        {"iteration": 2, "miou/standard": 25.0})) + "{cut by a kill")
    again = CliRunner().invoke(cli, ["report", str(tmp_path / "ad"), "--out", str(tmp_path / "t2")])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == ["curves.png", "miou.png", "per_class.png",
                                                                    "table.csv", "table.md"]
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no results.json here" in missing.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "results.json").write_text("{not json")
    junk = CliRunner().invoke(cli, ["report", str(tmp_path / "junk")])
    assert junk.exit_code == 2 and "results.json: not an evaluation result" in junk.output
    (tmp_path / "junk" / "results.json").write_text("[1, 2]")  # valid JSON, not an evaluation
    listed = CliRunner().invoke(cli, ["report", str(tmp_path / "junk")])
    assert listed.exit_code == 2 and "results.json: not an evaluation result" in listed.output
    assert "Traceback" not in listed.output



def test_report_training_curves_have_one_panel_per_quantity():
    """(The mIoU chart's axis is specified in test_report.py: it starts at zero.)"""
    from vdatrain.figures import training_curves

    run = [{"iteration": i, "loss": 1 / i, "loss/source": 0.5 / i, "pseudo_weight": 0.1 * i} for i in range(1, 5)]
    fig = training_curves({"HRDA": run + [{"iteration": 4, "miou/standard": 26.0}], "Source": run})
    assert [a.get_title() for a in fig.axes] == ["total loss", "loss terms", "pseudo-weight / refinement kept",
                                                 "mIoU at each evaluation (%)"]
    for name in ("HRDA", "Source"):  # one run, one colour in every panel
        colours = {line.get_color() for a in fig.axes for line in a.get_lines() if line.get_label().startswith(name)}
        assert len(colours) == 1, (name, colours)
