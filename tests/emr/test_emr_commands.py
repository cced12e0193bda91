"""``silverline emr ...`` against moto's EMR, EMR Serverless, Scheduler and S3 (what was submitted).

moto's EMR steps never finish and moto has no CancelSteps, so these tests assert on
what was submitted; the one cancellation call is checked with botocore's Stubber.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from jobs.cli import main
from jobs.config import ConfigError, load_config
from jobs.emr import submit as emr
from jobs.stream.control import clear_stop, request_stop, stop_requested

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = "s3://ops-bucket/eu1/artifacts/"
VENV = f"spark.archives={ARTIFACTS}silverline-venv.tar.gz#environment,{ARTIFACTS}silverline-conf.zip#conf"


def config_file(tmp_path: Path, **emr_section: Any) -> Path:
    data = {
        "group": {"name": "eu1", "bucket": "tenants-eu1"},
        "lake": {"root": str(tmp_path / "lake")},
        "emr": {"artifacts_uri": ARTIFACTS, "log_uri": "s3://ops-bucket/eu1/logs", **emr_section},
    }
    path = tmp_path / "emr.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ---- payloads (no AWS) ---------------------------------------------------------------------------------
@pytest.mark.unit
def test_the_stream_step_is_spark_submit_in_cluster_mode_with_the_venv_and_conf_archives(
    tmp_path: Path,
) -> None:
    config = load_config(config_file(tmp_path, cluster_id="j-1"))
    step = emr.emr_step(emr.submission(config, "stream", ["--trigger", "interval=30s"]))
    assert step["Name"] == "silverline-eu1-stream"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["HadoopJarStep"]["Args"] == [
        "spark-submit", "--deploy-mode", "cluster", "--master", "yarn", "--name", "silverline-eu1-stream",
        "--conf", VENV,
        "--conf", "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf", "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf", "spark.yarn.maxAppAttempts=4",
        "--conf", "spark.yarn.am.attemptFailuresValidityInterval=1h",
        f"{ARTIFACTS}stream_ingest.py", "--config", "conf/emr.yaml", "--trigger", "interval=30s",
    ]  # fmt: skip
    backfill = emr.spark_submit_args(emr.submission(config, "backfill", ["--tenant", "acme"]))
    assert backfill[-5:] == [f"{ARTIFACTS}backfill.py", "--config", "conf/emr.yaml", "--tenant", "acme"]
    assert not any("maxAppAttempts" in a for a in backfill)  # a failed backfill is not retried by YARN


@pytest.mark.unit
def test_the_serverless_job_run_streams_the_stream_and_batches_the_backfill(tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/job"
    config = load_config(
        config_file(tmp_path, target="serverless", application_id="app-1", execution_role_arn=role)
    )
    stream = emr.serverless_job_run(config, emr.submission(config, "stream"), "stream")
    assert (stream["applicationId"], stream["executionRoleArn"], stream["mode"]) == (
        "app-1",
        role,
        "STREAMING",
    )
    driver = stream["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == f"{ARTIFACTS}stream_ingest.py"
    assert driver["entryPointArguments"] == ["--config", "conf/emr.yaml"]
    assert driver["sparkSubmitParameters"].split(" --conf ") == [
        f"--conf {VENV}",
        "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python",
    ]  # YARN settings are not passed to Serverless
    assert stream["retryPolicy"] == {"maxFailedAttemptsPerHour": 5}
    assert stream["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"] == {
        "logUri": "s3://ops-bucket/eu1/logs/"
    }
    backfill = emr.serverless_job_run(config, emr.submission(config, "backfill"), "backfill")
    assert backfill["mode"] == "BATCH" and "retryPolicy" not in backfill


@pytest.mark.unit
def test_missing_deployment_settings_are_named(tmp_path: Path) -> None:
    bare = load_config(None, overrides={"lake": {"root": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"emr\.artifacts_uri"):
        emr.submission(bare, "stream")
    serverless = load_config(config_file(tmp_path, target="serverless"))
    with pytest.raises(ConfigError, match=r"emr\.application_id and emr\.execution_role_arn"):
        emr.serverless_job_run(serverless, emr.submission(serverless, "stream"), "stream")
    with pytest.raises(ConfigError, match=r"emr\.scheduler_role_arn"):
        emr.schedule_request(serverless, "s", "rate(1 day)", emr.submission(serverless, "backfill"))
    with pytest.raises(ValueError, match="s3:// prefix"):
        load_config(None, overrides={"emr": {"artifacts_uri": "/local/dir"}})


@pytest.mark.unit
def test_stop_stream_cancels_a_step_that_outlives_the_graceful_wait(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, cluster_id="j-1"))
    client = boto3.client("emr", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with Stubber(client) as stub:
        stub.add_response(
            "cancel_steps",
            {"CancelStepsInfoList": [{"StepId": "s-1", "Status": "SUBMITTED"}]},
            {"ClusterId": "j-1", "StepIds": ["s-1"], "StepCancellationOption": "SEND_INTERRUPT"},
        )
        original = emr.client
        emr.client = lambda _config, _service: client  # type: ignore[assignment]
        try:
            emr.cancel(config, "s-1")
        finally:
            emr.client = original  # type: ignore[assignment]
        stub.assert_no_pending_responses()


# ---- against moto --------------------------------------------------------------------------------------
def aws(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )


def cluster(endpoint: str) -> str:
    instances = {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True}
    return str(
        aws(endpoint, "emr").run_job_flow(
            Name=f"c-{uuid.uuid4().hex[:6]}",
            ReleaseLabel="emr-7.5.0",
            Instances=instances,
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )["JobFlowId"]
    )


@pytest.mark.integration
def test_deploy_stream_twice_submits_one_stream_and_clears_an_old_stop_marker(
    tmp_path: Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = cluster(moto_endpoint)
    path = config_file(tmp_path, cluster_id=cid, endpoint_url=moto_endpoint)
    config = load_config(path)
    request_stop(config, "the previous deployment's stop")
    assert main(["emr", "deploy-stream", "--config", str(path), "--", "--trigger", "interval=30s"]) == 0
    assert "removed the stop marker" in capsys.readouterr().out
    assert stop_requested(config) is None
    assert main(["emr", "deploy-stream", "--config", str(path)]) == 0
    assert "the stream already runs" in capsys.readouterr().out
    steps = aws(moto_endpoint, "emr").list_steps(ClusterId=cid)["Steps"]
    assert [s["Name"] for s in steps] == ["silverline-eu1-stream"]
    args = steps[0]["Config"]["Args"]
    assert args == emr.spark_submit_args(emr.submission(config, "stream", ["--trigger", "interval=30s"]))

    # stop-stream writes the marker the driver watches; moto's step never ends, so without
    # cancellation the command reports that the stream still runs.
    assert main(["emr", "stop-stream", "--config", str(path), "--wait", "0", "--no-cancel"]) == 1
    assert "still running after 0 s" in capsys.readouterr().out
    marker = stop_requested(config)
    assert marker is not None and marker["reason"] == "silverline emr stop-stream"

    assert main(["emr", "status", "--config", str(path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stream_jobs"] == [{"id": steps[0]["Id"], "state": "RUNNING"}]
    assert status["stop_requested"]["reason"] == "silverline emr stop-stream"
    assert (status["writer_lease"], status["pending_request_files"], status.get("last_batch")) == (
        None,
        0,
        None,
    )


@pytest.mark.integration
def test_backfills_are_submitted_and_scheduled_on_a_cluster_and_on_serverless(
    tmp_path: Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = cluster(moto_endpoint)
    scheduler_role = "arn:aws:iam::123456789012:role/scheduler"
    on_cluster = config_file(
        tmp_path, cluster_id=cid, endpoint_url=moto_endpoint, scheduler_role_arn=scheduler_role
    )
    assert main(["emr", "submit-backfill", "--config", str(on_cluster), "--", "--since", "2026-11-01"]) == 0
    [step] = aws(moto_endpoint, "emr").list_steps(ClusterId=cid)["Steps"]
    assert step["Name"] == "silverline-eu1-backfill"
    assert step["Config"]["Args"][-4:] == ["--config", "conf/emr.yaml", "--since", "2026-11-01"]

    name = f"nightly-{uuid.uuid4().hex[:6]}"
    schedule = ["emr", "schedule-backfill", "--config", str(on_cluster), "--name", name]
    assert main([*schedule, "--cron", "cron(30 2 * * ? *)", "--", "--delete-missing"]) == 0
    assert f"schedule {name} created" in capsys.readouterr().out
    assert main([*schedule, "--cron", "cron(45 3 * * ? *)", "--", "--delete-missing"]) == 0
    assert f"schedule {name} updated" in capsys.readouterr().out
    saved = aws(moto_endpoint, "scheduler").get_schedule(Name=name)
    assert saved["ScheduleExpression"] == "cron(45 3 * * ? *)"
    assert saved["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:emr:addJobFlowSteps"
    assert saved["Target"]["RoleArn"] == scheduler_role
    target = json.loads(saved["Target"]["Input"])
    assert target["JobFlowId"] == cid
    assert target["Steps"][0]["HadoopJarStep"]["Args"][-3:] == [
        "--config",
        "conf/emr.yaml",
        "--delete-missing",
    ]

    app = aws(moto_endpoint, "emr-serverless").create_application(
        name="a", releaseLabel="emr-7.5.0", type="SPARK"
    )
    serverless = tmp_path / "serverless"
    serverless.mkdir()
    role = "arn:aws:iam::123456789012:role/job"
    on_serverless = config_file(
        serverless,
        target="serverless",
        application_id=app["applicationId"],
        execution_role_arn=role,
        endpoint_url=moto_endpoint,
    )
    assert main(["emr", "submit-backfill", "--config", str(on_serverless), "--", "--tenant", "acme"]) == 0
    run_id = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    run = aws(moto_endpoint, "emr-serverless").get_job_run(
        applicationId=app["applicationId"], jobRunId=run_id
    )
    driver = run["jobRun"]["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == f"{ARTIFACTS}backfill.py"
    assert driver["entryPointArguments"] == ["--config", "conf/emr.yaml", "--tenant", "acme"]
    assert run["jobRun"]["executionRole"] == role


@pytest.mark.integration
def test_table_maintenance_is_submitted_and_scheduled_like_a_backfill(
    tmp_path: Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = cluster(moto_endpoint)
    on_cluster = config_file(
        tmp_path, cluster_id=cid, endpoint_url=moto_endpoint, scheduler_role_arn="arn:aws:iam::1:role/s"
    )
    assert main(["emr", "submit-maintain", "--config", str(on_cluster), "--", "--tenant", "acme"]) == 0
    assert "submitted the maintain" in capsys.readouterr().out
    [step] = aws(moto_endpoint, "emr").list_steps(ClusterId=cid)["Steps"]
    assert step["Name"] == "silverline-eu1-maintain"
    args = step["Config"]["Args"]
    assert args[-5:] == [f"{ARTIFACTS}maintain.py", "--config", "conf/emr.yaml", "--tenant", "acme"]

    assert main(["emr", "schedule-maintain", "--config", str(on_cluster), "--cron", "rate(1 day)"]) == 0
    assert "schedule silverline-eu1-maintain created" in capsys.readouterr().out
    saved = aws(moto_endpoint, "scheduler").get_schedule(Name="silverline-eu1-maintain")
    target = json.loads(saved["Target"]["Input"])
    assert target["Steps"][0]["Name"] == "silverline-eu1-maintain"
    assert f"{ARTIFACTS}maintain.py" in target["Steps"][0]["HadoopJarStep"]["Args"]


# ---- the rendered command really runs the job ----------------------------------------------------------
def local_spark_submit(args: list[str], entry: Path) -> list[str]:
    """The rendered EMR spark-submit with only its cluster-specific parts made local.

    YARN cluster mode -> local client mode; the venv/conf archives -> this virtualenv and a
    ./conf directory made the same way (the cluster's Iceberg -> the local runtime jar); the
    entry script's s3:// copy -> the same script in the checkout. Everything else, the job's
    own arguments included, is used as rendered.
    """
    from jobs.session import find_iceberg_jar

    out: list[str] = [str(Path(sys.executable).with_name("spark-submit"))]
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--master":
            out += [arg, "local[2]"]
            next(rest)
        elif arg == "--deploy-mode":
            out += [arg, "client"]
            next(rest)
        elif arg == "--conf":
            key, value = next(rest).split("=", 1)
            if key == "spark.archives":
                out += ["--jars", str(find_iceberg_jar())]
            else:
                out += ["--conf", f"{key}={value.replace('./environment/bin/python', sys.executable)}"]
        elif arg.startswith("s3://") and arg.endswith(".py"):
            out.append(str(entry))
        else:
            out.append(arg)
    return out


@pytest.mark.integration
def test_the_rendered_emr_spark_submit_runs_the_job_end_to_end_locally(
    tmp_path: Path, moto_endpoint: str
) -> None:
    from tests import streamkit as kit
    from tests.lakegen import Lake

    lake_dir = tmp_path / "lake"
    queue_url, _ = kit.make_queue(moto_endpoint)
    local = kit.write_config(tmp_path, lake_dir, moto_endpoint, queue_url, max_files_per_trigger=50)
    data = yaml.safe_load(local.read_text(encoding="utf-8"))
    data["emr"] = {"artifacts_uri": ARTIFACTS, "config_name": "silverline.yaml", "cluster_id": "j-1"}
    workdir = tmp_path / "container"  # what YARN's working directory holds: ./conf from the archive
    (workdir / "conf").mkdir(parents=True)
    (workdir / "conf" / "silverline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    lake = Lake(lake_dir, seed=31)
    for tenant in ("acme", "globex"):
        lake.put(tenant, "orders", "a.csv", rows=3)
    kit.send_all(moto_endpoint, queue_url, lake.messages)

    config = load_config(workdir / "conf" / "silverline.yaml")
    step = emr.emr_step(emr.submission(config, "stream", ["--trigger", "available-now"]))
    command = local_spark_submit(step["HadoopJarStep"]["Args"], PROJECT / "jobs" / "stream_ingest.py")
    env = {**kit.job_env(), "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    run = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    lines = [line for line in run.stderr.splitlines() if not line.lstrip().startswith("at ")]
    assert run.returncode == 0, "\n".join(lines[-60:])
    for tenant in ("acme", "globex"):
        got = kit.silver_rows(
            lake_dir, tenant, "orders", ["order_id", "customer_id", "amount", "currency", "order_ts"]
        )
        assert got == lake.expected_rows(tenant, "orders")
    table = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics"))
    assert table is not None
    kit.assert_balanced(table.to_pylist())


@pytest.mark.integration
def test_the_stop_marker_lives_under_an_s3_ops_root(tmp_path: Path, moto_endpoint: str) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    aws(moto_endpoint, "s3").create_bucket(Bucket=name)
    config = load_config(
        None,
        overrides={
            "lake": {"root": str(tmp_path), "ops_root": f"s3://{name}/eu1/"},
            "aws": {"endpoint_url": moto_endpoint},
        },
    )
    assert stop_requested(config) is None
    assert request_stop(config, "maintenance") == f"s3://{name}/eu1/control/stop-stream"
    marker = stop_requested(config)
    assert marker is not None and marker["reason"] == "maintenance"
    clear_stop(config)
    assert stop_requested(config) is None
    assert "Contents" not in aws(moto_endpoint, "s3").list_objects_v2(Bucket=name, Prefix="eu1/control/")
