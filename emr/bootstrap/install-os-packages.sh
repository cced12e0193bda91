#!/usr/bin/env bash
# EMR bootstrap action: the OS packages silverline needs on every node of an EMR 7.x cluster
# (Amazon Linux 2023). Python packages do not belong here: they come with silverline-venv.tar.gz
# (spark.archives=...#environment), whose bin/python is a link to /usr/bin/python3.11, which is
# why python3.11 is the one package always installed. Extra packages can be given as arguments
# (BootstrapActions[].ScriptBootstrapAction.Args).
#
# Idempotent: packages already installed are left alone, so a rerun (or a node that already
# has them) changes nothing.
set -euo pipefail

packages=(python3.11 "$@")

if [[ ! -r /etc/os-release ]]; then
  echo "install-os-packages: /etc/os-release is missing; expected Amazon Linux 2023 (EMR 7.x)" >&2
  exit 1
fi
# shellcheck source=/dev/null
. /etc/os-release
if [[ "${ID:-}" != "amzn" || "${VERSION_ID:-}" != "2023" ]]; then
  echo "install-os-packages: expected Amazon Linux 2023 (EMR 7.x), found ${PRETTY_NAME:-unknown}" >&2
  exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  as_root=(sudo)
fi

missing=()
for package in "${packages[@]}"; do
  if ! rpm -q --quiet "$package"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-os-packages: already installed: ${packages[*]}"
else
  echo "install-os-packages: installing ${missing[*]}"
  "${as_root[@]}" dnf install -y --setopt=install_weak_deps=False "${missing[@]}"
fi

# The interpreter the packed venv links to must be there and be 3.11.
/usr/bin/python3.11 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
