"""Packaging for silverline: distribution ``silverline``, package ``jobs``."""

from __future__ import annotations

from setuptools import find_packages, setup

setup(
    name="silverline",
    version="0.1.0",
    description=(
        "S3 event notifications from SQS -> deduplicated, ordered, per-tenant "
        "Apache Iceberg silver tables (PySpark Structured Streaming)."
    ),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["jobs", "jobs.*"]),
    # The EMR templates (jobs.emr.artifacts renders them) must be in the wheel.
    package_data={"jobs": ["py.typed", "log4j2-quiet.properties"], "jobs.emr": ["templates/*/*.json"]},
    install_requires=[
        "pyspark>=3.5,<3.6",
        "pyiceberg[pyarrow]>=0.12",
        "pyarrow>=16",
        "boto3>=1.34",
        "pydantic>=2.6,<3",
        "PyYAML>=6",
        "rich>=13",  # progress bars and tables of the demo and simulator
    ],
    extras_require={
        # Local runtime: the Iceberg Spark runtime jar from PyPI and the local AWS APIs
        # (moto's server) of the demo. Not needed on EMR.
        "local": ["snowpark-connect-deps-iceberg==1.0.2", "moto[server]>=5"],
    },
    entry_points={"console_scripts": ["silverline=jobs.cli:main"]},
)
