# berth in a container: the binary, its browser bundle next to it, data in
# /var/lib/berth. Build: docker build -t berth . (needs a registry and crates.io).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
# Must equal the wasm-bindgen version in Cargo.lock (scripts/test.sh checks).
ARG WASM_BINDGEN_VERSION=0.2.130
RUN rustup target add wasm32-unknown-unknown \
 && cargo install wasm-bindgen-cli --version ${WASM_BINDGEN_VERSION} \
 && cargo install wasm-opt --version 0.116.1 --locked
WORKDIR /src
COPY . .
RUN cargo build -p frontend --lib --locked --target wasm32-unknown-unknown --profile wasm-release \
 && mkdir -p /out/site/pkg \
 && wasm-bindgen --target web --no-typescript --out-dir /out/site/pkg --out-name berth \
      target/wasm32-unknown-unknown/wasm-release/frontend.wasm \
 && wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      /out/site/pkg/berth_bg.wasm -o /out/site/pkg/berth_bg.wasm \
 && cp style/berth.css /out/site/pkg/berth.css
RUN SQLX_OFFLINE=true cargo build --release --locked -p berth-server \
 && cp target/release/berth /out/berth

FROM debian:bookworm-slim
# postgresql-client: pg_dump, pg_restore, psql, createdb, dropdb for
# PostgreSQL backup sources, restores and drills.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/berth
# berth looks for its browser bundle in `site/` next to the executable.
COPY --from=build /out/berth /usr/local/lib/berth/berth
COPY --from=build /out/site /usr/local/lib/berth/site
ENV BERTH_DATA_DIR=/var/lib/berth \
    BERTH_LISTEN=0.0.0.0:8443
VOLUME /var/lib/berth
EXPOSE 8443
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/lib/berth/berth"]
CMD ["serve"]
