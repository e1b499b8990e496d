# One image for every shippy-rs binary; the compose file picks the binary
# with `command`. Build: docker build -t shippy-rs .
#
# The dependency layer is derived from the workspace by cargo-chef: `prepare`
# reads every manifest (and Cargo.lock) into a recipe, `cook` builds the
# dependencies from the recipe alone, so editing the sources does not rebuild
# them and no crate is listed here by hand. Then the workspace is built, and a
# small runtime image runs it as a non-root user.

# The packages whose binaries the runtime image ships (not the bench or dev
# tools); the dependencies are cooked for exactly these, with their features.
ARG PACKAGES="-p vessel-service -p consignment-service -p user-service -p email-service -p consignment-cli -p user-cli -p api-gateway"

FROM rust:1.95-slim-bookworm AS chef
# PEM certificates to trust besides the image's own, for a network whose
# TLS-inspecting proxy cargo must get through to crates.io; empty (nothing
# added) unless given, e.g. by compose from SHIPPY_BUILD_EXTRA_CA_CERTS.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" >>/etc/ssl/certs/ca-certificates.crt; \
    fi
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS deps
ARG PACKAGES
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bins $PACKAGES --recipe-path recipe.json

FROM deps AS build
ARG PACKAGES
COPY . .
RUN cargo build --release --locked --bins $PACKAGES

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
