# syntax=docker/dockerfile:1
# A static, non-root image: the binary on distroless/static, nothing else.
# Build: docker build -t dualstack-webhook:latest .
# Reproducible: pinned toolchain and --locked dependencies, no timestamps or absolute paths in the
# binary (path prefix remapped, debug info stripped); set SOURCE_DATE_EPOCH for the image layers.

FROM docker.io/library/rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY manifests/policy.yaml manifests/policy.yaml
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src
COPY src src
ENV RUSTFLAGS="--remap-path-prefix=/src=. -C strip=symbols"
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/dualstack-webhook /dualstack-webhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /dualstack-webhook /dualstack-webhook
# distroless "nonroot" is uid/gid 65532; the Deployment also sets runAsNonRoot and a read-only root.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/dualstack-webhook"]
CMD ["serve"]
