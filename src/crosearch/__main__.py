"""``python -m crosearch``: the same as the ``crosearch`` command."""

from crosearch.cli import main

main()
