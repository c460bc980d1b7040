#!/usr/bin/env bash
# Installs the Debian packages that the tests, the demo or the benchmarks need, only those missing.
# Usage: scripts/install-deps.sh PACKAGE...   (as root, or through sudo)
# The packages' own services are not started: migrated's tests and demo start their own servers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
for pkg in "$@"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
((${#missing[@]})) || exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || { echo "install-deps: need root to install ${missing[*]}" >&2; exit 1; }
	sudo=sudo
fi
echo "install-deps: installing ${missing[*]}"
# A policy-rc.d that exits 101 keeps invoke-rc.d from starting the packages' services.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	$sudo sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
	trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
