# Sourced by the other scripts: one warm build cache outside the clone, so
# that CI in a fresh clone rebuilds incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
export PATH="$HOME/.cargo/bin:$PATH"
BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BERTH_ROOT
# The browser bundle lands here; berth finds it (see config.rs).
export BERTH_SITE_OUT="$BERTH_ROOT/target/site"
