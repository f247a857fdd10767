"""``python -m crosearch.cli`` (what ``accelerate launch -m crosearch.cli`` runs)."""

from crosearch.cli import main

main()
