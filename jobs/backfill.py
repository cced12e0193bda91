"""``spark-submit jobs/backfill.py --config FILE [...]``: the backfill's entry point.

Takes the same arguments as ``silverline backfill``; the ``jobs`` package must be
importable (installed wheel, or ``--py-files``).
"""

from __future__ import annotations

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(["backfill", *sys.argv[1:]]))
