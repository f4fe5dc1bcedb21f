"""Fixtures shared across the suite: the tiny synthetic replicas of the four raw layouts."""

import pytest

from flowprep.synth.generate import generate


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory):
    """`flowprep synth --scale tiny --seed 0` written once per test session; treat as read-only."""
    root = tmp_path_factory.mktemp("synth") / "raw"
    generate(root, scale="tiny", seed=0, workers=2, progress=False)
    return root


_KILLER = """
import importlib, os, signal, sys
module, cls, method, after = {module!r}, {cls!r}, {method!r}, {after}
owner = getattr(importlib.import_module(module), cls)
original, calls = getattr(owner, method), 0
def wrapped(*args, **kwargs):
    global calls
    calls += 1
    if calls == after:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, method, wrapped)
from {program}.cli import main
sys.argv = [{program!r}, *{argv!r}]
main()
"""


@pytest.fixture
def run_killed(tmp_path):
    """Run `flowprep ARGV` (or `program`) in a subprocess that SIGKILLs itself on the `after`-th call of `target`
    ("module:Class.method"), as a crash or an OOM kill would; returns the CompletedProcess. `launch`
    puts a launcher before the script, e.g. ["-m", "torch.distributed.run", "--nproc-per-node", "2"]."""
    import subprocess
    import sys

    def run(target: str, after: int, *argv, program: str = "flowprep", launch: tuple = ()):
        module, rest = target.split(":")
        cls, method = rest.split(".")
        script = tmp_path / "killed_run.py"
        script.write_text(_KILLER.format(module=module, cls=cls, method=method, after=after,
                                         argv=[str(a) for a in argv], program=program))
        return subprocess.run([sys.executable, *launch, str(script)], capture_output=True, text=True)

    return run
