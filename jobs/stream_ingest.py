"""``spark-submit jobs/stream_ingest.py --config FILE [...]``: the streaming job's entry point.

Takes the same arguments as ``silverline stream``; the ``jobs`` package must be
importable (installed wheel, or ``--py-files``).
"""

from __future__ import annotations

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
