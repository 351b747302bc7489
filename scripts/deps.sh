#!/usr/bin/env bash
# Installs what the test suite needs when it is missing, so `make test` passes on a new
# machine. Uses apt-get (as root, or through sudo when there is one).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# command -> Debian package
have redis-server || need+=(redis-server)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
echo "deps: installing ${need[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
