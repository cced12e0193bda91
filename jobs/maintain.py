"""``spark-submit jobs/maintain.py --config FILE [...]``: table maintenance's entry point.

Takes the same arguments as ``silverline maintain``; the ``jobs`` package must be
importable (installed wheel, or ``--py-files``).
"""

from __future__ import annotations

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
