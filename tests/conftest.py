"""Fixtures shared across the suite: the tiny synthetic replicas of the four raw layouts."""

import pytest

from flowprep.synth.generate import generate


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory):
    """`flowprep synth --scale tiny --seed 0` written once per test session; treat as read-only."""
    root = tmp_path_factory.mktemp("synth") / "raw"
    generate(root, scale="tiny", seed=0, workers=2, progress=False)
    return root
