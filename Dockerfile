# syntax=docker/dockerfile:1
#
# Sluice container image (see README.md, "Deploy").
#
#   docker build -t sluice .                      # the proxy (last stage, `runtime`)
#   docker build --target demo -t sluice-demo .   # plus the embedded demo backends
#
# The proxy reads /etc/sluice/proxy.toml: mount yours there. Its [admin]
# table must listen on 0.0.0.0:9930 for the HEALTHCHECK below and for
# probes and scrapes from outside the container (deploy/compose/proxy.toml).
# tests/deploy.rs checks this file against docker-compose.yml and
# deploy/kubernetes/ (ports, paths, user, health URL).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

# --- Build: dependencies first, in a layer of their own -----------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS skeleton
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Every target the manifest names gets an empty stand-in, so cargo can
# build the dependencies before the sources are copied: the next layer of
# each build stage is rebuilt only when Cargo.toml or Cargo.lock change.
COPY deploy/docker/cargo-skeleton.sh /usr/local/bin/cargo-skeleton
RUN sh /usr/local/bin/cargo-skeleton

FROM skeleton AS build
RUN cargo build --release --locked --bin sluice
COPY src ./src
# COPY keeps the files' times, which may be older than the stand-ins'.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin sluice \
 && cp target/release/sluice /usr/local/bin/sluice

# The demo (examples/demo.rs) needs the dev-dependencies: its own stage, so
# `docker build .` never compiles them.
FROM skeleton AS demo-build
# Examples are found by their file, so the demo needs its stand-in here.
RUN mkdir -p examples \
 && echo 'fn main() {}' > examples/demo.rs \
 && cargo build --release --locked --example demo
COPY src ./src
COPY examples ./examples
RUN touch src/main.rs src/lib.rs examples/demo.rs \
 && cargo build --release --locked --bin sluice --example demo \
 && cp target/release/sluice /usr/local/bin/sluice \
 && cp target/release/examples/demo /usr/local/bin/sluice-demo

# --- Runtime base: Debian slim, a non-root user --------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS base
# ca-certificates: the CA bundle for ca_file with Azure SQL (docs/AZURE.md);
# curl: the HEALTHCHECK.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice \
 && mkdir -p /etc/sluice
USER 10001:10001
# 1433: TDS (listen.address); 9930: admin API (admin.address).
EXPOSE 1433 9930

# --- Demo: the embedded backends (docker-compose.demo.yml) ----------------
FROM base AS demo
COPY --from=demo-build /usr/local/bin/sluice /usr/local/bin/sluice
COPY --from=demo-build /usr/local/bin/sluice-demo /usr/local/bin/sluice-demo
EXPOSE 14331 14332
# Without arguments: the two backends for deploy/demo/proxy.toml. With
# `--host 0.0.0.0 --port 1433` instead: Sluice and its backends in one
# process (admin API on 1434).
ENTRYPOINT ["/usr/local/bin/sluice-demo"]
CMD ["--backends-only", "--host", "0.0.0.0", "--port", "14331"]

# --- Runtime: the proxy (the default target) -------------------------------
FROM base AS runtime
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9930/healthz"]
# SIGTERM drains (listen.shutdown_timeout_ms); exec form, so it reaches
# Sluice as PID 1. Give `docker stop -t` more than that timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config", "/etc/sluice/proxy.toml"]
