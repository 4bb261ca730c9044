#!/usr/bin/env bash
# Builds berth (server + browser bundle) and runs it on its embedded default:
# SQLite in ./data, HTTPS with a self-signed certificate on :8443.
# Extra arguments go to `berth serve`, e.g. `--listen 127.0.0.1:9443`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$BERTH_ROOT"
scripts/install-deps.sh --build
scripts/build-site.sh
SQLX_OFFLINE=true cargo build --release --locked -p berth-server
exec "$CARGO_TARGET_DIR/release/berth" serve --data-dir "${BERTH_DATA_DIR:-$BERTH_ROOT/data}" \
  --site-dir "$BERTH_SITE_OUT" "$@"
