"""`python -m vdatrain` (and `torchrun ... -m vdatrain fit RECIPE`)."""

from vdatrain.cli import main

main()
