#!/usr/bin/env bash
# Installs the Debian packages the tests use when their tools are missing: curl, jq and openssl
# (the test scripts), xmllint (libxml2-utils; tests/outputs.rs validates JUnit output with it) and
# objdump (binutils; tests/image.rs reads the libraries the binary needs).
set -euo pipefail
tools=() packages=()
# TOOL or TOOL:PACKAGE, where the package has another name.
for entry in curl jq openssl xmllint:libxml2-utils objdump:binutils; do
  tool=${entry%%:*} package=${entry#*:}
  command -v "$tool" >/dev/null || { tools+=("$tool"); packages+=("$package"); }
done
((${#tools[@]})) || exit 0
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: missing ${tools[*]}; install them (apt-get install ${packages[*]})" >&2
  exit 2
fi
echo "install-deps: installing ${packages[*]} (for ${tools[*]})" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
