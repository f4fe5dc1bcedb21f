"""`python -m flowprep` (the same as the `flowprep` command)."""

from flowprep.cli import main

main()
