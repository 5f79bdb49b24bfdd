"""``python -m gateway``: the ``fanout`` command line."""

from gateway.cli import main

main()
