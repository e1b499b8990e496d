# One image for every shippy-rs binary; the compose file picks the binary
# with `command`. Build: docker build -t shippy-rs .
#
# Stage 1 builds the dependencies from the manifests alone, so editing the
# sources does not rebuild them; stage 2 builds the workspace; stage 3 is a
# small runtime image that runs as a non-root user.
FROM rust:1.95-slim-bookworm AS deps
# PEM certificates to trust besides the image's own, for a network whose
# TLS-inspecting proxy cargo must get through to crates.io; empty (nothing
# added) unless given, e.g. by compose from SHIPPY_BUILD_EXTRA_CA_CERTS.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" >>/etc/ssl/certs/ca-certificates.crt; \
    fi
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY shippy-proto/Cargo.toml shippy-proto/
COPY shippy-service/Cargo.toml shippy-service/
COPY shippy-testkit/Cargo.toml shippy-testkit/
COPY shippy-harness/Cargo.toml shippy-harness/
COPY shippy-auth/Cargo.toml shippy-auth/
COPY shippy-store/Cargo.toml shippy-store/
COPY shippy-cli/Cargo.toml shippy-cli/
COPY shippy-bench/Cargo.toml shippy-bench/
COPY shippy-chaos/Cargo.toml shippy-chaos/
COPY shippy-dev/Cargo.toml shippy-dev/
COPY vessel-service/Cargo.toml vessel-service/
COPY consignment-service/Cargo.toml consignment-service/
COPY user-service/Cargo.toml user-service/
COPY email-service/Cargo.toml email-service/
COPY consignment-cli/Cargo.toml consignment-cli/
COPY user-cli/Cargo.toml user-cli/
COPY api-gateway/Cargo.toml api-gateway/
# Stub sources so `cargo build` compiles only the dependencies.
RUN for crate in shippy-proto shippy-service shippy-testkit shippy-harness shippy-auth shippy-store shippy-cli; do \
        mkdir -p $crate/src && echo > $crate/src/lib.rs; \
    done \
 && mkdir -p shippy-bench/src/bin/bench \
 && echo 'fn main() {}' > shippy-bench/src/bin/bench/main.rs \
 && echo 'fn main() {}' > shippy-bench/src/bin/echo-server.rs \
 && for crate in shippy-chaos shippy-dev vessel-service consignment-service user-service email-service consignment-cli user-cli api-gateway; do \
        mkdir -p $crate/src && echo 'fn main() {}' > $crate/src/main.rs && echo > $crate/src/lib.rs; \
    done \
 && cargo build --release --locked --workspace --bins

FROM deps AS build
COPY . .
# Make cargo see the real sources as newer than the stubs.
# Only the seven binaries the runtime image ships (not the bench tools).
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p vessel-service -p consignment-service -p user-service \
        -p email-service -p consignment-cli -p user-cli -p api-gateway --bins

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin shippy \
 && mkdir /config /keys /work && chown shippy /config /keys
COPY --from=build /src/target/release/vessel-service \
                  /src/target/release/consignment-service \
                  /src/target/release/user-service \
                  /src/target/release/email-service \
                  /src/target/release/consignment-cli \
                  /src/target/release/user-cli \
                  /src/target/release/api-gateway \
                  /usr/local/bin/
USER shippy
ENV LOG_FORMAT=json
CMD ["vessel-service", "--help"]
