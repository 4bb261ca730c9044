#!/usr/bin/env bash
# Runs every check and test berth has: formatting, the committed offline query
# data, clippy, the browser bundle, the compose file, unit + integration tests
# and the real-browser tests. Installs what it needs first; safe to rerun.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$BERTH_ROOT"
scripts/install-deps.sh --test

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== offline query data (.sqlx) matches the queries and migrations"
tmp="$(mktemp -d)"
# The tests import their images (busybox, a PostgreSQL made from this host's
# packages, the e2e's busybox), all labelled berth-test=1; they go at the end,
# tagged or not. Nothing without that label is touched.
remove_test_images() {
  docker images -q --filter label=berth-test=1 | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
}
trap 'rm -rf "$tmp"; remove_test_images' EXIT
export DATABASE_URL="sqlite://$tmp/check.db"
cargo sqlx database create
cargo sqlx migrate run --source migrations
cargo sqlx prepare --workspace --check -- --all-targets
unset DATABASE_URL
export SQLX_OFFLINE=true

echo "== wasm-bindgen versions agree"
lock_wb="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
grep -q "ARG WASM_BINDGEN_VERSION=$lock_wb\$" Dockerfile \
  || { echo "Dockerfile's WASM_BINDGEN_VERSION differs from Cargo.lock ($lock_wb)"; exit 1; }

# `frontend` turns on app's `hydrate` feature and the server its `ssr`
# feature; built together, cargo would unify them into one (broken) app. So
# the browser half is linted and built on its own.
echo "== clippy"
cargo clippy --workspace --exclude frontend --all-targets --locked -- -D warnings
cargo clippy -p frontend --locked -- -D warnings

echo "== browser bundle"
scripts/build-site.sh

echo "== docker-compose.yml"
docker-compose -f docker-compose.yml config -q

echo "== tests (unit, integration over HTTP, real browser)"
cargo test --workspace --exclude frontend --locked
