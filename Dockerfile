# The hubfleet image: `hubfleet serve` (and `hubfleet proxy`), as `hubfleet render k8s` runs it.
#   docker build -t ghcr.io/hubfleet/hubfleet:0.1.0 .
# The hub's config is read from /etc/hubfleet (the Deployment mounts its Secret and ConfigMap
# there); its state goes under /srv/hubfleet (the SQLite PVC).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# ring and SQLite (bundled) are built with the C compiler of the rust image; nothing else.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --locked --profile dist -p hubfleet \
    && install -m 0755 target/dist/hubfleet /usr/local/bin/hubfleet

FROM debian:bookworm-slim
# CA certificates for OAuth providers and ACME; nothing else is needed at run time. Not pinned:
# the image should get the distribution's current CA list.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# uid/gid 1000, as z2jh's hub.containerSecurityContext (runAsUser, runAsGroup) expects.
RUN groupadd --gid 1000 hubfleet \
    && useradd --uid 1000 --gid 1000 --home-dir /srv/hubfleet --no-create-home \
        --shell /usr/sbin/nologin hubfleet \
    && install -d -o hubfleet -g hubfleet -m 0700 /srv/hubfleet \
    && install -d -m 0755 /etc/hubfleet
COPY --from=builder /usr/local/bin/hubfleet /usr/local/bin/hubfleet
USER 1000:1000
WORKDIR /srv/hubfleet
EXPOSE 8000
ENTRYPOINT ["hubfleet"]
CMD ["serve", "--config", "/etc/hubfleet/values.yaml"]
