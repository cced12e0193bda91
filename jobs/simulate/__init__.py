"""Traffic simulator: a SaaS platform feeding one tenant group, with the ground truth to check silver.

Files mode (:func:`run`) writes objects into the local lake and returns the
notification bodies to publish (:func:`publish`); S3-API mode
(:func:`run_s3_api`) lets the store send its own notifications. Either way the
:class:`GroundTruth` says what silver must hold; :func:`verify` checks it.
"""

from __future__ import annotations

from jobs.simulate.s3api import run_s3_api
from jobs.simulate.simulator import run
from jobs.simulate.spec import DATASETS, SimulationSpec, tenant_names
from jobs.simulate.sqs import GroupQueues, PublishError, allow_bucket_notifications, create_group, publish
from jobs.simulate.truth import GroundTruth, Injected, normalise_value
from jobs.simulate.verify import TableResult, Verification, verify

__all__ = [
    "DATASETS",
    "GroundTruth",
    "GroupQueues",
    "Injected",
    "PublishError",
    "SimulationSpec",
    "TableResult",
    "Verification",
    "allow_bucket_notifications",
    "create_group",
    "normalise_value",
    "publish",
    "run",
    "run_s3_api",
    "tenant_names",
    "verify",
]
