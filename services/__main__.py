"""``python -m services`` is the ``puente`` command."""

from services.cli import main

main()
