"""``python -m service.cli``: the latentcast command, as the console script runs it."""

from __future__ import annotations

import sys

from service.cli import main

sys.exit(main())
