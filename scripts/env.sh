# Sourced by the other scripts: one warm build cache outside the clone, so
# that CI in a fresh clone rebuilds incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
export PATH="$HOME/.cargo/bin:$PATH"
BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BERTH_ROOT
# The browser bundle lands here; berth finds it (see config.rs).
export BERTH_SITE_OUT="$BERTH_ROOT/target/site"
# Incremental caches grow by gigabytes per rebuild of the Leptos crates; the
# test run does not need them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# A cache that has grown past 40 GB (old artifacts pile up across dependency
# changes) is dropped rather than allowed to fill the disk.
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s -BG "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1 | tr -d G)" -gt 40 ]; then
  echo "build cache $CARGO_TARGET_DIR is over 40 GB: removing it"
  rm -rf "$CARGO_TARGET_DIR"
fi
