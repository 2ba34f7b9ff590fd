"""``python -m neuromask`` runs the command line."""

from neuromask.cli.main import main

main()
