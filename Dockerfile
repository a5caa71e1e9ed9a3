# syntax=docker/dockerfile:1
# A non-root image: the binary on distroless/cc (glibc and libgcc, nothing else).
# Build: docker build -t dualstack-webhook:latest .
# Reproducible: pinned toolchain and --locked dependencies, no timestamps or absolute paths in the
# binary (path prefix remapped, debug info stripped); set SOURCE_DATE_EPOCH for the image layers.
#
# The glibc build, not a static musl one: it is the build every test and benchmark runs
# (bench/README.md, "The shipped build"). musl's allocator made a review cost ~63 µs of CPU instead
# of ~40 and the p50 at 1000 reviews a second 1.38-1.46 times the floor's instead of 1.26-1.33.
# The build stage is Debian 12 like the runtime, so the binary asks for no newer glibc than it has
# (tests/image.rs checks what the binary links against).

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY manifests/policy.yaml manifests/policy.yaml
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src src
ENV RUSTFLAGS="--remap-path-prefix=/src=. -C strip=symbols"
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/dualstack-webhook /dualstack-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /dualstack-webhook /dualstack-webhook
# distroless "nonroot" is uid/gid 65532; the Deployment also sets runAsNonRoot and a read-only root.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/dualstack-webhook"]
CMD ["serve"]
