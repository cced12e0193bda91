"""What silverline submits to EMR: spark-submit arguments, EMR steps, EMR Serverless job runs, schedules.

Pure functions build the payloads (``silverline emr render`` prints them); the
small functions at the end make the AWS calls. Artifacts live under
``emr.artifacts_uri``:

* ``stream_ingest.py``, ``backfill.py`` and ``maintain.py`` — the entry scripts (copies of ``jobs/``);
* ``silverline-venv.tar.gz`` — Python 3.11 with silverline and its dependencies
  (venv-pack, built for Amazon Linux 2023), unpacked as ``./environment``;
* ``silverline-conf.zip`` — the configuration, ``datasets.yaml`` and ``expectations/``,
  unpacked as ``./conf`` (so the job runs with ``--config conf/<emr.config_name>``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jobs.config import ConfigError, SilverlineConfig

log = logging.getLogger(__name__)

Job = Literal["stream", "backfill", "maintain"]
ENTRY = {"stream": "stream_ingest.py", "backfill": "backfill.py", "maintain": "maintain.py"}
VENV_ARCHIVE = "silverline-venv.tar.gz"
CONF_ARCHIVE = "silverline-conf.zip"
PYTHON = "./environment/bin/python"
RUNNING_STEP_STATES = ["PENDING", "RUNNING", "CANCEL_PENDING"]
RUNNING_JOB_STATES = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED"]


def job_name(config: SilverlineConfig, job: Job) -> str:
    """The step / job run name: ``silverline-<group>-<job>`` (how a running stream is recognised)."""
    return f"silverline-{config.group.name}-{job}"


def _artifacts(config: SilverlineConfig) -> str:
    if not config.emr.artifacts_uri:
        raise ConfigError("emr.artifacts_uri: set the s3:// prefix the packaging step uploaded to")
    return config.emr.artifacts_uri


@dataclass(frozen=True)
class Submission:
    """One job: its entry script, arguments and Spark settings."""

    name: str
    entry_point: str
    arguments: tuple[str, ...]
    spark_conf: Mapping[str, str]


def submission(config: SilverlineConfig, job: Job, job_args: Sequence[str] = ()) -> Submission:
    """The job as the cluster sees it (entry point, ``--config conf/...`` and the job's arguments)."""
    base = _artifacts(config)
    conf = {
        "spark.archives": f"{base}{VENV_ARCHIVE}#environment,{base}{CONF_ARCHIVE}#conf",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON": PYTHON,
        "spark.executorEnv.PYSPARK_PYTHON": PYTHON,
    }
    if job == "stream":  # a driver that dies is restarted; it resumes from the checkpoint
        conf["spark.yarn.maxAppAttempts"] = "4"
        conf["spark.yarn.am.attemptFailuresValidityInterval"] = "1h"
    arguments = ("--config", f"conf/{config.emr.config_name}", *job_args)
    return Submission(job_name(config, job), f"{base}{ENTRY[job]}", arguments, conf)


def spark_submit_args(sub: Submission) -> list[str]:
    """``spark-submit`` in YARN cluster mode (what an EMR step runs through command-runner.jar)."""
    args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn", "--name", sub.name]
    for key, value in sub.spark_conf.items():
        args += ["--conf", f"{key}={value}"]
    return [*args, sub.entry_point, *sub.arguments]


def emr_step(sub: Submission) -> dict[str, Any]:
    """An EMR on EC2 step (``AddJobFlowSteps``)."""
    return {
        "Name": sub.name,
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": spark_submit_args(sub)},
    }


def serverless_job_run(config: SilverlineConfig, sub: Submission, job: Job) -> dict[str, Any]:
    """An EMR Serverless ``StartJobRun`` request (STREAMING for the stream, BATCH for backfills)."""
    emr = config.emr
    if not emr.application_id or not emr.execution_role_arn:
        raise ConfigError("emr.application_id and emr.execution_role_arn are needed for target serverless")
    conf = {k: v for k, v in sub.spark_conf.items() if not k.startswith("spark.yarn.")}
    conf["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] = PYTHON
    parameters = " ".join(f"--conf {k}={v}" for k, v in conf.items())
    request: dict[str, Any] = {
        "applicationId": emr.application_id,
        "executionRoleArn": emr.execution_role_arn,
        "name": sub.name,
        "mode": "STREAMING" if job == "stream" else "BATCH",
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": sub.entry_point,
                "entryPointArguments": list(sub.arguments),
                "sparkSubmitParameters": parameters,
            }
        },
    }
    if job == "stream":
        request["retryPolicy"] = {"maxFailedAttemptsPerHour": 5}
    if emr.log_uri:
        monitoring = {"s3MonitoringConfiguration": {"logUri": emr.log_uri}}
        request["configurationOverrides"] = {"monitoringConfiguration": monitoring}
    return request


def schedule_request(
    config: SilverlineConfig,
    name: str,
    expression: str,
    sub: Submission,
    *,
    timezone: str = "UTC",
    job: Job = "backfill",
) -> dict[str, Any]:
    """An EventBridge Scheduler ``CreateSchedule`` request that submits a batch job (backfill, maintain)."""
    emr = config.emr
    if not emr.scheduler_role_arn:
        raise ConfigError("emr.scheduler_role_arn: the role EventBridge Scheduler assumes to submit the job")
    if emr.target == "serverless":
        arn = "arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun"
        payload: dict[str, Any] = serverless_job_run(config, sub, job)
        payload["clientToken"] = "<aws.scheduler.execution-id>"  # one run per schedule invocation
    else:
        arn = "arn:aws:scheduler:::aws-sdk:emr:addJobFlowSteps"
        payload = {"JobFlowId": _cluster(config), "Steps": [emr_step(sub)]}
    return {
        "Name": name,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": arn,
            "RoleArn": emr.scheduler_role_arn,
            "Input": json.dumps(payload, sort_keys=True),
        },
    }


def render(config: SilverlineConfig, job: Job, job_args: Sequence[str] = ()) -> dict[str, Any]:
    """Everything ``silverline emr render`` prints for one job."""
    sub = submission(config, job, job_args)
    out: dict[str, Any] = {"spark_submit": spark_submit_args(sub), "emr_step": emr_step(sub)}
    if config.emr.application_id and config.emr.execution_role_arn:
        out["serverless_start_job_run"] = serverless_job_run(config, sub, job)
    return out


# ---- AWS calls -----------------------------------------------------------------------------------------
def _cluster(config: SilverlineConfig) -> str:
    if not config.emr.cluster_id:
        raise ConfigError("emr.cluster_id: the EMR cluster (j-...) to run on, or set emr.target: serverless")
    return config.emr.cluster_id


def client(config: SilverlineConfig, service: str) -> Any:
    """A boto3 client for ``emr``, ``emr-serverless``, ``scheduler`` or ``s3``."""
    import boto3

    endpoint = config.emr.endpoint_url or config.aws.endpoint_url
    return boto3.client(service, region_name=config.aws.region, endpoint_url=endpoint)  # type: ignore[call-overload]


@dataclass(frozen=True)
class RunningJob:
    """A step or job run of ours that has not finished."""

    id: str
    state: str


def running(config: SilverlineConfig, job: Job) -> list[RunningJob]:
    """Our unfinished steps (cluster) or job runs (serverless) with the job's name."""
    name = job_name(config, job)
    if config.emr.target == "serverless":
        runs = client(config, "emr-serverless").list_job_runs(
            applicationId=config.emr.application_id, states=RUNNING_JOB_STATES
        )["jobRuns"]
        return [RunningJob(r["id"], r["state"]) for r in runs if r.get("name") == name]
    steps = client(config, "emr").list_steps(ClusterId=_cluster(config), StepStates=RUNNING_STEP_STATES)[
        "Steps"
    ]
    return [RunningJob(s["Id"], s["Status"]["State"]) for s in steps if s["Name"] == name]


def submit(config: SilverlineConfig, job: Job, job_args: Sequence[str] = ()) -> str:
    """Submit one job; returns the step id or job run id."""
    sub = submission(config, job, job_args)
    if config.emr.target == "serverless":
        response = client(config, "emr-serverless").start_job_run(**serverless_job_run(config, sub, job))
        return str(response["jobRunId"])
    response = client(config, "emr").add_job_flow_steps(JobFlowId=_cluster(config), Steps=[emr_step(sub)])
    return str(response["StepIds"][0])


def cancel(config: SilverlineConfig, job_id: str) -> None:
    """Cancel a step (SIGTERM to spark-submit: the driver stops between batches) or a job run."""
    if config.emr.target == "serverless":
        client(config, "emr-serverless").cancel_job_run(
            applicationId=config.emr.application_id, jobRunId=job_id
        )
        return
    client(config, "emr").cancel_steps(
        ClusterId=_cluster(config), StepIds=[job_id], StepCancellationOption="SEND_INTERRUPT"
    )


def put_schedule(config: SilverlineConfig, request: Mapping[str, Any]) -> str:
    """Create the schedule, or update it when one of that name exists; returns "created" or "updated"."""
    scheduler = client(config, "scheduler")
    try:
        scheduler.get_schedule(Name=request["Name"])
    except scheduler.exceptions.ResourceNotFoundException:
        scheduler.create_schedule(**request)
        return "created"
    scheduler.update_schedule(**request)
    return "updated"
