"""PySpark's worker daemon, with the batch tasks' code imported before it forks the workers.

Spark starts this module once per executor (``spark.python.daemon.module``, set by
:func:`jobs.session.session_settings`) and forks one Python worker from it for each
task running at once. The tasks that read a batch's objects (:mod:`jobs.stream.tasks`)
need great-expectations and its in-memory context: about 4 s of CPU to import and
create. Done here, every forked worker inherits them, instead of each worker paying
it on its first batch. Everything else is PySpark's own daemon.
"""

from __future__ import annotations

import pyspark.daemon

import jobs.stream.tasks  # noqa: F401  (imported for the workers to inherit)
from jobs.quality.validate import warm_up

warm_up()

if __name__ == "__main__":
    pyspark.daemon.manager()  # type: ignore[no-untyped-call]
