"""`python -m boomerang` runs the CLI."""

from boomerang.cli.app import main

main()
