#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks need, only those missing.
# Usage: scripts/ensure-debs.sh package:binary [package:binary ...]
# A package counts as present when its binary is on PATH (or at /usr/bin, /usr/sbin).
set -euo pipefail

missing=()
for spec in "$@"; do
    pkg=${spec%%:*}
    bin=${spec#*:}
    if ! command -v "$bin" >/dev/null 2>&1 && [[ ! -x /usr/bin/$bin && ! -x /usr/sbin/$bin ]]; then
        missing+=("$pkg")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
