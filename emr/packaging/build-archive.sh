#!/usr/bin/env bash
# Build silverline's EMR artifacts and (with --upload) put them under an S3 prefix:
#
#   silverline-venv.tar.gz   Python 3.11 venv (Amazon Linux 2023) with the runtime requirements
#                            and silverline, packed by venv-pack (built in Docker, see Dockerfile)
#   silverline-*.whl         the project wheel (also inside the venv)
#   silverline-conf.zip      with --config: the configuration, datasets.yaml and expectations/
#                            (unpacked as ./conf, so the job runs with --config conf/<name>)
#   stream_ingest.py, backfill.py, maintain.py, install-os-packages.sh   uploaded as they are
#
# Usage: emr/packaging/build-archive.sh [--out DIR] [--platform linux/amd64|linux/arm64]
#            [--config FILE [--config-name NAME] [--datasets FILE]] [--upload s3://BUCKET/PREFIX/]
#            [--dry-run] [--print-requirements] [--local]
#
#   --local  build the same venv on this machine's python3.11 instead of in Docker (PYTHON
#            overrides the interpreter): the archive's bin/python links to that interpreter, so it
#            runs only where that path exists. For testing the archive (make emr-archive-local);
#            the Docker build on Amazon Linux 2023 stays the one to upload.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$ROOT/dist/emr"
PLATFORM=linux/amd64
CONFIG=""
CONFIG_NAME=""
DATASETS="$ROOT/conf/datasets.yaml"
UPLOAD=""
DRY_RUN=0
LOCAL=0

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "build-archive: $*" >&2
  exit 2
}

run() {
  if ((DRY_RUN)); then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --platform) PLATFORM=${2:?--platform needs a value}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --config-name) CONFIG_NAME=${2:?--config-name needs a name}; shift 2 ;;
    --datasets) DATASETS=${2:?--datasets needs a file}; shift 2 ;;
    --upload) UPLOAD=${2:?--upload needs an s3:// prefix}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --local) LOCAL=1; shift ;;
    --print-requirements)
      exec bash "$HERE/runtime-requirements.sh" "$ROOT/requirements.txt" "$HERE/exclude-requirements.txt" ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$PLATFORM" in
  linux/amd64 | linux/arm64) ;;
  *) die "--platform must be linux/amd64 or linux/arm64 (the EMR instances' architecture), got $PLATFORM" ;;
esac
if [[ -n "$UPLOAD" ]]; then
  [[ "$UPLOAD" == s3://?* ]] || die "--upload must be an s3:// prefix, got $UPLOAD"
  [[ "$UPLOAD" == */ ]] || UPLOAD="$UPLOAD/"
fi
if [[ -n "$CONFIG" ]]; then
  [[ -f "$CONFIG" ]] || die "no such configuration file: $CONFIG"
  [[ -f "$DATASETS" ]] || die "no such dataset contracts file: $DATASETS"
  CONFIG_NAME=${CONFIG_NAME:-$(basename "$CONFIG")}
fi
if ((LOCAL)) && [[ -n "$UPLOAD" ]]; then
  die "--local builds an archive for this machine only: it cannot be uploaded"
fi
if ((!DRY_RUN && !LOCAL)); then
  command -v docker >/dev/null || die "docker is needed to build on Amazon Linux 2023"
  if [[ -n "$UPLOAD" ]]; then
    command -v aws >/dev/null || die "the AWS CLI is needed for --upload"
  fi
fi

# The Dockerfile's steps on this machine: tools venv, runtime venv, wheel, smoke test, venv-pack.
build_local() {
  local py=${PYTHON:-python3.11} work
  "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || die "--local needs Python 3.11 (EMR 7.x); set PYTHON"
  work=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" RETURN
  "$py" -m venv "$work/tools"
  "$work/tools/bin/pip" install --quiet venv-pack==0.2.0 wheel
  bash "$HERE/runtime-requirements.sh" "$ROOT/requirements.txt" "$HERE/exclude-requirements.txt" \
    > "$work/requirements-emr.txt"
  "$py" -m venv "$work/silverline"
  "$work/silverline/bin/pip" install --quiet --upgrade pip
  "$work/silverline/bin/pip" install --quiet -r "$work/requirements-emr.txt"
  rm -f "$OUT"/silverline-*.whl
  "$work/tools/bin/pip" wheel --quiet --no-deps --wheel-dir "$OUT" "$ROOT"
  "$work/silverline/bin/pip" install --quiet --no-deps "$OUT"/silverline-*.whl
  "$work/silverline/bin/python" -c "import jobs.stream.command, great_expectations, pyiceberg, pyarrow, boto3, rich"
  "$work/silverline/bin/python" -c "from jobs.emr.artifacts import known_placeholders as k; assert k()"
  "$work/tools/bin/venv-pack" --quiet --prefix "$work/silverline" --output "$OUT/silverline-venv.tar.gz" --force
  chmod a+r "$OUT"/*
}

run mkdir -p "$OUT"
if ((LOCAL)); then
  if ((DRY_RUN)); then
    echo "build_local  # $HERE/Dockerfile's steps with ${PYTHON:-python3.11}, into $OUT"
  else
    build_local
  fi
else
  # BuildKit: --output, and Dockerfile.dockerignore next to the Dockerfile.
  run env DOCKER_BUILDKIT=1 docker build \
    --platform "$PLATFORM" \
    --file "$HERE/Dockerfile" \
    --target export \
    --output "type=local,dest=$OUT" \
    "$ROOT"
fi

if [[ -n "$CONFIG" ]]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  run cp "$CONFIG" "$stage/$CONFIG_NAME"
  run cp "$DATASETS" "$stage/datasets.yaml"
  run cp -R "$(dirname "$DATASETS")/expectations" "$stage/expectations"
  run rm -f "$OUT/silverline-conf.zip"
  run python3 -c 'import shutil, sys; shutil.make_archive(sys.argv[1], "zip", sys.argv[2])' \
    "$OUT/silverline-conf" "$stage"
fi

if [[ -n "$UPLOAD" ]]; then
  # The wheel's name has the version; in a dry run nothing was built and the pattern stays as is.
  files=("$OUT/silverline-venv.tar.gz" "$OUT"/silverline-*.whl "$ROOT/jobs/stream_ingest.py"
    "$ROOT/jobs/backfill.py" "$ROOT/jobs/maintain.py" "$ROOT/emr/bootstrap/install-os-packages.sh")
  [[ -z "$CONFIG" ]] || files+=("$OUT/silverline-conf.zip")
  for file in "${files[@]}"; do
    run aws s3 cp "$file" "$UPLOAD$(basename "$file")"
  done
  echo "uploaded to $UPLOAD (set emr.artifacts_uri: $UPLOAD)"
else
  echo "built in $OUT"
fi
