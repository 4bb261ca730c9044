#!/usr/bin/env bash
# Builds the browser bundle (wasm + JS glue + CSS) into target/site/pkg.
# Debian's rustc-web compiles the wasm32 half (rustup here has no wasm32 std);
# it gets its own target dir so the two compilers never invalidate each other.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$BERTH_ROOT"
front="$CARGO_TARGET_DIR/front"
pkg="$BERTH_SITE_OUT/pkg"

RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
  /usr/bin/cargo build -p frontend --lib --locked \
    --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort \
    --profile wasm-release --target-dir "$front"

mkdir -p "$pkg"
wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name berth \
  "$front/wasm32-unknown-unknown/wasm-release/frontend.wasm"
wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$pkg/berth_bg.wasm" -o "$pkg/berth_bg.wasm"
cp style/berth.css "$pkg/berth.css"

raw=$(stat -c %s "$pkg/berth_bg.wasm")
gz=$(gzip -9 -c "$pkg/berth_bg.wasm" | wc -c)
if command -v brotli >/dev/null; then br=$(brotli -q 11 -c "$pkg/berth_bg.wasm" | wc -c); else br="n/a"; fi
echo "site: $pkg  wasm raw=${raw} B gzip=${gz} B brotli=${br} B"
