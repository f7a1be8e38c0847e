# flowhouse's image. Build: `docker build -t flowhouse .`; with the
# embedded engine (chDB, about 570 MB more): `--build-arg WITH_CHDB=1`.
# Without it the image needs a ClickHouse server (clickhouse.addr; see
# docker-compose.yml).
#
# The final image is distroless base (glibc, CA certificates, tzdata; no
# shell, no package manager), not distroless static: the CGO_ENABLED=0
# binary is still dynamically linked, because purego (store/chdb.go, which
# dlopens libchdb.so at run time) imports libc, libdl and libpthread, and
# libchdb.so itself needs glibc. Its nonroot user is 65532:65532.
ARG WITH_CHDB=0

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/flowhouse ./cmd/flowhouse \
    && mkdir -p /out/var/spool /out/var/state /out/var/data /out/lib

# The MAC vendor registry (enrich.oui_dir's default, /usr/share/ieee-data)
# and, with WITH_CHDB=1, the embedded engine's library, checked against
# scripts/libchdb.sha256 by scripts/chdb.sh.
FROM debian:bookworm-slim AS assets
ARG WITH_CHDB
COPY scripts/chdb.sh scripts/libchdb.sha256 /src/scripts/
RUN apt-get update \
    && apt-get install -y --no-install-recommends ieee-data \
    && if [ "$WITH_CHDB" = 1 ]; then \
        apt-get install -y --no-install-recommends npm ca-certificates \
        && /src/scripts/chdb.sh install /out/lib/libchdb.so; \
    fi \
    && mkdir -p /out/lib && rm -f /out/lib/libchdb.so.sha256 \
    && rm -rf /var/lib/apt/lists/*

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=assets /usr/share/ieee-data/ /usr/share/ieee-data/
COPY --from=assets /out/lib/ /usr/local/lib/flowhouse/
COPY --from=build /out/flowhouse /usr/local/bin/flowhouse
COPY --from=build --chown=65532:65532 /out/var/ /var/lib/flowhouse/
WORKDIR /var/lib/flowhouse
# Every address, not loopback, so that published ports reach it; the
# state lives under /var/lib/flowhouse, a volume.
ENV FLOWHOUSE_HTTP_LISTEN=0.0.0.0:8080 \
    FLOWHOUSE_SPOOL_DIR=/var/lib/flowhouse/spool \
    FLOWHOUSE_COLLECTOR_STATE_FILE=/var/lib/flowhouse/state/collector.state \
    FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH=/var/lib/flowhouse/data \
    FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY=/usr/local/lib/flowhouse/libchdb.so
VOLUME ["/var/lib/flowhouse"]
USER 65532:65532
EXPOSE 2055/udp 4739/udp 6343/udp 8080/tcp
# /readyz: the database answers and the migrations are applied. The start
# period covers the migrations of a first start.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/flowhouse", "health"]
ENTRYPOINT ["/usr/local/bin/flowhouse"]
CMD ["serve"]
