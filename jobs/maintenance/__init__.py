"""``silverline maintain``: Iceberg table maintenance and retention, safe next to the running stream."""

from __future__ import annotations

from jobs.maintenance.run import STEPS, MaintenanceReport, run_maintenance, tables_to_maintain
from jobs.maintenance.tables import TableReport, maintain_table

__all__ = [
    "STEPS",
    "MaintenanceReport",
    "TableReport",
    "maintain_table",
    "run_maintenance",
    "tables_to_maintain",
]
