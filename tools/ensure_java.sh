#!/usr/bin/env bash
# The Spark engine (RECDAG_ENGINE=spark, and its tests in `make test`) needs a Java 17+ runtime.
# Installs Debian's default headless JRE when this user may (root, or password-less sudo); otherwise
# says in one line what to run.
set -euo pipefail
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ -n "$major" && "$major" -ge 17 ]]
}
java_ok && exit 0
install=(apt-get install -y -qq --no-install-recommends default-jre-headless)
if [[ "$(id -u)" == 0 ]]; then
  echo "[recdag] installing Debian's Java runtime for the Spark engine (apt-get)..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "[recdag] installing Debian's Java runtime for the Spark engine (sudo apt-get)..."
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null
fi
if ! java_ok; then
  echo "[recdag] the Spark engine needs Java 17 or newer: run 'sudo apt-get install -y default-jre-headless' and try again." >&2
  exit 1
fi
