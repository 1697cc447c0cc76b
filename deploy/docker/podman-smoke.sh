#!/usr/bin/env bash
# Builds and runs the Dockerfile's image stages on a machine without Docker
# or access to a container registry (how they were checked where Sluice is
# developed): podman from Debian, a Debian base made with debootstrap, and
# the Sluice binaries built here in debug mode instead of the Dockerfile's
# Rust stages (those need the rust image from a registry).
#
# The `base`, `runtime` and `demo` stages are used verbatim; the build
# stages are replaced by a COPY of target/debug/sluice and
# target/debug/examples/demo. Then, on the host network:
#   - the demo image's default command (the two backends on 14331/14332),
#   - the runtime image with deploy/demo/proxy.toml mounted as is
#     (demo-backends resolving to 127.0.0.1),
# and checks: a read and a write through Sluice with FreeTDS tsql, routed to
# the replica and the primary; the image's HEALTHCHECK; the user (10001);
# SIGTERM from `podman stop` drains and exits 0.
#
# Needs root, Debian packages podman runc debootstrap freetds-bin curl, the
# Debian mirror for debootstrap and the image's apt-get, and ports 1433, 9930,
# 14331 and 14332 free. Not part of CI (minutes, network). Usage:
#   bash deploy/docker/podman-smoke.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
RELEASE=bookworm
BASE="docker.io/library/debian:$RELEASE-slim"
# crun refuses hybrid cgroup hierarchies, and raising rlimits may be denied:
# runc, with limits below the host's.
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
WORK="$(mktemp -d)"

cleanup() {
  "${PODMAN[@]}" rm -f sluice-smoke demo-backends-smoke >/dev/null 2>&1 || true
  "${PODMAN[@]}" rmi -f localhost/sluice-smoke:runtime localhost/sluice-smoke:demo >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "podman-smoke: $*" >&2
  exit 1
}

for port in 1433 9930 14331 14332; do
  if ss -ltnH "sport = :$port" | grep -q .; then
    fail "port $port is in use"
  fi
done

echo "podman-smoke: building the binaries (debug)"
(cd "$ROOT" && cargo build -q --bin sluice --example demo)
cp "$ROOT/target/debug/sluice" "$ROOT/target/debug/examples/demo" "$WORK/"

if ! "${PODMAN[@]}" image exists "$BASE"; then
  echo "podman-smoke: making $BASE with debootstrap"
  debootstrap --variant=minbase "$RELEASE" "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  rm -f "$WORK"/rootfs/var/cache/apt/archives/*.deb
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import -q - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

# The Dockerfile with its Rust stages swapped for the binaries built above.
python3 - "$ROOT/Dockerfile" "$WORK/Dockerfile" <<'PY'
import sys
text = open(sys.argv[1]).read()
start = text.index("# --- Build: dependencies first")
end = text.index("# --- Runtime base")
stand_in = """FROM debian:${DEBIAN_RELEASE}-slim AS build
COPY sluice /usr/local/bin/sluice
FROM build AS demo-build
COPY demo /usr/local/bin/sluice-demo

"""
open(sys.argv[2], "w").write(text[:start] + stand_in + text[end:])
PY

for target in runtime demo; do
  echo "podman-smoke: building the $target stage"
  "${PODMAN[@]}" build -q --format docker --pull=never --network host "${LIMITS[@]}" \
    --build-arg "DEBIAN_RELEASE=$RELEASE" --target "$target" \
    -t "localhost/sluice-smoke:$target" "$WORK" >/dev/null
done

echo "podman-smoke: running the demo backends and Sluice"
"${PODMAN[@]}" run -d --name demo-backends-smoke --network host "${LIMITS[@]}" \
  localhost/sluice-smoke:demo >/dev/null
"${PODMAN[@]}" run -d --name sluice-smoke --network host "${LIMITS[@]}" \
  --add-host demo-backends:127.0.0.1 \
  -v "$ROOT/deploy/demo/proxy.toml:/etc/sluice/proxy.toml:ro" \
  localhost/sluice-smoke:runtime >/dev/null
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null http://127.0.0.1:9930/readyz 2>/dev/null && break
  sleep 0.2
done

out="$(printf 'SELECT name FROM dbo.demo_items WHERE id = 2\ngo\nUPDATE dbo.demo_items SET price = 81 WHERE id = 2\ngo\n' \
  | timeout 20 tsql -H 127.0.0.1 -p 1433 -U app -P app 2>&1)" || fail "tsql failed: $out"
grep -q weir <<<"$out" || fail "no row came back: $out"
metrics="$(curl -fsS http://127.0.0.1:9930/metrics)"
grep -q 'sluice_requests_total{target="replica",backend="replica-1",reason="read"} 1' <<<"$metrics" \
  || fail "the read did not go to the replica: $(grep sluice_requests_total <<<"$metrics")"
grep -q 'sluice_requests_total{target="primary",backend="primary",reason="write"} 1' <<<"$metrics" \
  || fail "the write did not go to the primary: $(grep sluice_requests_total <<<"$metrics")"
"${PODMAN[@]}" healthcheck run sluice-smoke >/dev/null 2>&1 || fail "the HEALTHCHECK failed"
user="$("${PODMAN[@]}" exec sluice-smoke id -u)"
[[ "$user" == 10001 ]] || fail "Sluice runs as uid $user, not 10001"

"${PODMAN[@]}" stop -t 40 sluice-smoke >/dev/null
code="$("${PODMAN[@]}" inspect sluice-smoke --format '{{.State.ExitCode}}')"
logs="$("${PODMAN[@]}" logs sluice-smoke 2>&1)"
[[ "$code" == 0 ]] || fail "Sluice exited $code after SIGTERM: $logs"
grep -q 'drained; exiting' <<<"$logs" || fail "no drain in the log: $logs"
"${PODMAN[@]}" stop -t 10 demo-backends-smoke >/dev/null
echo "podman-smoke: OK (read on the replica, write on the primary, HEALTHCHECK, uid 10001, SIGTERM drained, exit 0)"
