# Build: the same command works outside Docker (`cargo build --release --locked`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# `moat demo` embeds the shipped config and spec at build time.
COPY config ./config
# `.git` stays out of the context, so `moat --version` says commit `unknown` unless told:
# docker build --build-arg MOAT_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t moat .
ARG MOAT_GIT_COMMIT
ARG SOURCE_DATE_EPOCH
RUN cargo build --release --locked --bin moat

# Run: distroless (glibc, no shell), as the non-root user 65532. Paths in config/moat.yaml
# are relative to /srv/moat; mount your own config/ over it.
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /srv/moat
COPY --from=build /src/target/release/moat /usr/local/bin/moat
COPY config ./config
# Numeric, so Kubernetes runAsNonRoot can verify it (65532 is distroless `nonroot`).
USER 65532:65532
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/moat", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/moat"]
CMD ["serve"]
