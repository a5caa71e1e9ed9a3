#!/usr/bin/env bash
# Installs the Debian packages the test scripts use (curl, jq, openssl) when they are missing.
set -euo pipefail
missing=()
for tool in curl jq openssl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
((${#missing[@]})) || exit 0
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
  exit 2
fi
echo "install-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
