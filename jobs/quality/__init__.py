"""Data quality: expectation suites, row verdicts, the good/quarantine split, results and report.

- :mod:`jobs.quality.suites` loads great-expectations suites from ``conf/expectations/``
  and checks them against the dataset contracts at startup.
- :mod:`jobs.quality.validate` runs a suite ONCE per dataset per micro-batch over all
  tenants' rows and returns :class:`jobs.quality.verdicts.RowVerdicts`.
- :mod:`jobs.quality.split` splits a DataFrame with a ``_failed`` column into good and
  quarantined rows.
- :mod:`jobs.quality.results` turns verdicts into ``validation_results`` ops-table rows and
  stores GE's result JSON; :mod:`jobs.quality.report` reads them back.

Nothing here imports great_expectations at import time (it takes seconds).
"""
