"""Batch runs with the streaming job's guarantees: ``silverline backfill`` and ``silverline replay``."""
