"""``python -m jobs`` runs the silverline command line."""

from __future__ import annotations

import sys

from jobs.cli import main

sys.exit(main())
