"""What `pip install .` gives a researcher: a wheel that carries its manifests and recipes and works outside
the source tree; `python -m flowprep` and `python -m vdatrain`."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_every_manifest_and_recipe_and_loads_them_installed(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for manifest in (ROOT / "manifests").glob("*.yaml"):
        assert f"flowprep/manifests/{manifest.name}" in names
    for recipe in (ROOT / "vdatrain/recipes").rglob("*.yaml"):  # the recipes and the pieces they compose
        assert f"vdatrain/recipes/{recipe.relative_to(ROOT / 'vdatrain/recipes').as_posix()}" in names
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import flowprep, vdatrain.recipe as r; from flowprep.manifest import load_manifest, manifest_dir; "
            "print(flowprep.__file__); print(manifest_dir()); print(load_manifest('cityscapes-seq').name); "
            "print(r.find_recipe('dlv2-hrda-mic-viper-cs')); "
            "assert r.load_recipe('dlv2-hrda-mic-viper-bdd').model.hrda.detail_crop == (360, 360)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    package, manifests, name, recipe = run.stdout.split()
    site = str(tmp_path / "site")
    assert package.startswith(site) and manifests.startswith(site) and recipe.startswith(site)
    assert name == "cityscapes-seq"


def test_both_packages_run_as_modules():
    for package in ("flowprep", "vdatrain"):
        proc = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, proc.stderr
