# Backstop: build the release binary, then ship it on a slim Debian with the
# database client tools its sources call (pg_dump, mariadb-dump, sqlite3).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin backstop

FROM debian:bookworm-slim
# Versions come from the bookworm suite the base image tracks; pinning exact
# Debian revisions would break the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        curl \
        mariadb-client \
        postgresql-client \
        sqlite3 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --no-log-init --uid 10001 --user-group \
        --home-dir /var/lib/backstop --create-home --shell /usr/sbin/nologin backstop
COPY --from=build /src/target/release/backstop /usr/local/bin/backstop
WORKDIR /var/lib/backstop
# The backstop user, by number so that runtimes that check for a non-root
# user without reading /etc/passwd (e.g. Kubernetes runAsNonRoot) accept it.
USER 10001:10001
# /healthz and /metrics are served on [api] listen, which must be 0.0.0.0:8470
# inside the container for this port and the health check to reach them.
EXPOSE 8470
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD ["/usr/bin/curl","-fsS","http://127.0.0.1:8470/healthz"]
ENTRYPOINT ["backstop"]
CMD ["--config", "/etc/backstop/backstop.toml", "daemon"]
