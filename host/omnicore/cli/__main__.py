"""``python -m omnicore.cli``: the same as the ``omnicore`` command."""

from omnicore.cli import main

main()
