# Tributary's server. Build: docker build -t tributary .
FROM rust:1-bookworm AS build
WORKDIR /src
# The bundled librdkafka builds with these (OpenSSL for TLS and SASL/SCRAM).
RUN apt-get update && apt-get install -y --no-install-recommends cmake build-essential libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin tributary

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tributary /usr/local/bin/tributary
VOLUME /data
EXPOSE 6570
ENTRYPOINT ["tributary", "serve", "--listen", "0.0.0.0:6570", "--data-dir", "/data"]
