"""``python -m rbprep`` runs the command line."""

from rbprep.cli import run

run()
