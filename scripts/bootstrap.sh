#!/usr/bin/env bash
# Installs everything the bot and its tests need on a fresh Debian/Ubuntu machine:
#  - Debian packages: bubblewrap (sandbox isolation) and the Python libraries the local sandbox uses
#    (the full library list is installed in the Cloud Run image from sandbox-image/requirements.txt);
#  - npm packages (npm ci).
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(bubblewrap python3 python3-dill python3-numpy python3-pandas python3-matplotlib python3-openpyxl python3-nbformat)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: please install these with your package manager: ${missing[*]}" >&2
  else
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

stamp=node_modules/.bootstrap-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
