#!/usr/bin/env bash
# `make test` needs a browser for the end-to-end UI test: Debian's chromium at /usr/bin/chromium.
# Installs it when this user may (root, or password-less sudo); otherwise says in one line what to run.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[[ -x "$CHROMIUM" ]] && exit 0
install=(apt-get install -y -qq --no-install-recommends chromium)
if [[ "$(id -u)" == 0 ]]; then
  echo "[recdag] installing Debian's chromium for the UI tests (apt-get)..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "[recdag] installing Debian's chromium for the UI tests (sudo apt-get)..."
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null
fi
if [[ ! -x "$CHROMIUM" ]]; then
  echo "[recdag] the UI tests need Chromium at $CHROMIUM: run 'sudo apt-get install -y chromium' and then 'make test' again." >&2
  exit 1
fi
