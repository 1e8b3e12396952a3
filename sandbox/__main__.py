"""``python -m sandbox`` runs the ``sandbox`` command."""

import sys

from .cli import main

sys.exit(main())
