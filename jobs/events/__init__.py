"""The S3 event model: envelopes, keys, sequencers, identity (rules R1-R4)."""

from __future__ import annotations

from jobs.events.model import FIELDS, OUTCOMES, ParsedRecord
from jobs.events.parse import parse_message

__all__ = ["FIELDS", "OUTCOMES", "ParsedRecord", "parse_message"]
