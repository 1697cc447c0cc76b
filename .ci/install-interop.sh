#!/usr/bin/env bash
# Installs the real TDS client drivers used by tests/interop on Debian 12 (run as root):
#   - FreeTDS tsql                       (apt: freetds-bin)
#   - runtime libraries of the Microsoft ODBC Driver 18 bundled in mssql-python
#     (libltdl7 is the one a stock image lacks; libkrb5-3, libgssapi-krb5-2, libstdc++6, libssl3)
#   - pytds + pyOpenSSL + mssql-python   (venv at <repo>/.venv, pins in tests/interop/requirements.txt)
#   - prometheus-client                  (same venv: its text parser checks tests/metrics.rs's scrape)
#   - check-jsonschema, kubernetes-validate (same venv: tests/deploy.rs validates the compose files
#                                           and Kubernetes manifests against their bundled schemas)
#   - shellcheck                         (apt: tests/deploy.rs lints the deployment's shell scripts)
#   - redis-server                       (apt, Redis 7.0 with TLS: tests/redis.rs runs the result
#                                         cache's Redis client against it, tests/common/redis.rs)
#   - tedious                            (npm ci in tests/interop, pinned by package-lock.json)
# Idempotent and quiet: a second run does no network access and prints nothing.
# Use the venv's python for the Python clients: .venv/bin/python tests/interop/pytds_client.py ...
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INTEROP="$ROOT/tests/interop"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

APT_PACKAGES=(freetds-bin libltdl7 libkrb5-3 libgssapi-krb5-2 libstdc++6 libssl3 ca-certificates shellcheck redis-server)

# Run a command with its output kept aside; show it only if the command fails.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc)); then
    echo "install-interop: failed ($rc): $*" >&2
    cat "$log" >&2
  fi
  rm -f "$log"
  return "$rc"
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-interop: node/npm not found; installing Debian's nodejs + npm" >&2
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get update
  quiet apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Python venv, re-synced only when requirements.txt changed.
stamp="$VENV/.sluice-interop-requirements"
if [[ ! -x "$VENV/bin/python" ]]; then
  quiet "$PYTHON" -m venv "$VENV"
fi
if ! cmp -s "$INTEROP/requirements.txt" "$stamp"; then
  quiet "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$INTEROP/requirements.txt"
  cp "$INTEROP/requirements.txt" "$stamp"
fi

# tedious, re-installed only when package-lock.json changed.
stamp="$INTEROP/node_modules/.sluice-interop-lock"
if ! cmp -s "$INTEROP/package-lock.json" "$stamp"; then
  (cd "$INTEROP" && quiet npm ci --no-audit --no-fund)
  cp "$INTEROP/package-lock.json" "$stamp"
fi

# Fail now, not in the middle of a test run, if something did not come through.
command -v tsql >/dev/null
command -v shellcheck >/dev/null
command -v redis-server >/dev/null
"$VENV/bin/python" - <<'PY'
import ctypes, glob, os
import OpenSSL.SSL, pytds, mssql_python, mssql_python_odbc
import prometheus_client.parser
import check_jsonschema, kubernetes_validate, yaml, ruamel.yaml
# mssql-python only dlopens ODBC Driver 18 at connect time; load it now so a missing
# shared library (e.g. libltdl.so.7) fails here, with the library's name.
libdir = glob.glob(os.path.join(os.path.dirname(mssql_python_odbc.__file__), "libs/linux/debian_ubuntu/x86_64/lib"))[0]
for lib in ("libodbcinst.so.2", "libmsodbcsql-18.*.so.*"):
    ctypes.CDLL(glob.glob(os.path.join(libdir, lib))[0], mode=ctypes.RTLD_GLOBAL)
PY
(cd "$INTEROP" && node -e 'require("tedious")')
for tool in check-jsonschema kubernetes-validate; do
  [[ -x "$VENV/bin/$tool" ]] || { echo "install-interop: $VENV/bin/$tool is missing" >&2; exit 1; }
done
