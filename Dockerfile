# syntax=docker/dockerfile:1
# Build: `make build`, the same command CI runs.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# `make build` is the one build command: CI runs it too (.ci/run), and checks the binary is static.
RUN make build VERSION="${VERSION}" BIN=/out/migrated

# Run: pg_dump is needed for the PostgreSQL schema copy; it must be at least the source's major version.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin migrated
COPY --from=build /out/migrated /usr/local/bin/migrated
USER 10001
EXPOSE 7654
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:7654/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/migrated"]
CMD ["run", "--config", "/etc/migrated/migration.yaml"]
