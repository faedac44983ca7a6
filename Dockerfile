# Tributary's server. Build: docker build -t tributary .
FROM rust:1-bookworm AS build
WORKDIR /src
# The image's binary keeps no line tables: the build layers stay a few GB smaller, and a backtrace
# still names every function.
ENV CARGO_PROFILE_RELEASE_DEBUG=false
# The bundled librdkafka builds with these (OpenSSL for TLS and SASL/SCRAM).
RUN apt-get update && apt-get install -y --no-install-recommends cmake build-essential libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
# Users build with full optimisation. scripts/compose-check, which checks that the image builds and
# runs the seed pipeline, passes OPT_LEVEL=1: LLVM's work dominates a cold build, and CI's time
# limit must hold a cold test build and a cold image build together.
ARG OPT_LEVEL=3
ENV CARGO_PROFILE_RELEASE_OPT_LEVEL=${OPT_LEVEL}
COPY Cargo.toml Cargo.lock ./
# Dependencies first, in a layer of their own that stays cached until Cargo.toml or Cargo.lock
# changes: stand-in sources for every target, built and thrown away.
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for bench in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml); do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --release --locked --bin tributary \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# COPY keeps the files' own times, older than the stand-ins' build: touch makes cargo rebuild.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tributary

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tributary /usr/local/bin/tributary
VOLUME /data
EXPOSE 6570
ENTRYPOINT ["tributary", "serve", "--listen", "0.0.0.0:6570", "--data-dir", "/data"]
