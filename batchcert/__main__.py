"""`python -m batchcert` runs the command line."""

from batchcert.cli import main

main()
