# flowhouse with a ClickHouse server (see docker-compose.yml). The embedded
# engine's library is not in this image: with a server it is never loaded.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/flowhouse ./cmd/flowhouse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ieee-data ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/flowhouse /usr/local/bin/flowhouse
WORKDIR /var/lib/flowhouse
EXPOSE 2055/udp 4739/udp 6343/udp 8080/tcp
ENTRYPOINT ["/usr/local/bin/flowhouse"]
CMD ["serve"]
