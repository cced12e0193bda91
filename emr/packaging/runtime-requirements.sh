#!/usr/bin/env bash
# Print the requirements to ship in silverline-venv.tar.gz: REQUIREMENTS without the packages
# named in EXCLUDES (compared like pip does: case-insensitive, '-', '_' and '.' alike; extras,
# versions and markers ignored). Comments and blank lines are dropped.
#
#   emr/packaging/runtime-requirements.sh requirements.txt emr/packaging/exclude-requirements.txt
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 REQUIREMENTS EXCLUDES" >&2
  exit 2
fi

awk '
  function normalise(name) { name = tolower(name); gsub(/[-_.]+/, "-", name); return name }
  function strip(line) { sub(/#.*/, "", line); gsub(/^[ \t]+|[ \t\r]+$/, "", line); return line }
  NR == FNR { line = strip($0); if (line != "") excluded[normalise(line)] = 1; next }
  {
    line = strip($0)
    if (line == "") next
    name = line
    sub(/[[ =<>!~;@].*/, "", name)
    if (!(normalise(name) in excluded)) print line
  }
' "$2" "$1"
