#!/usr/bin/env bash
# Installs what building and testing berth needs on a fresh Debian machine of
# this kind. Safe to run again: each step checks before it installs.
#   --build   only what building and running needs (Debian's wasm toolchain,
#             wasm-bindgen, wasm-opt)
#   --test    also what the test suite needs (chromium + chromedriver,
#             sqlx-cli, docker-compose, busybox-static, nginx, pebble, bind9,
#             PowerDNS, aiosmtpd, moto, openssh-server)
set -euo pipefail
mode="${1:---build}"

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Debian's rustc-web ships the wasm32 target that rustup cannot download here;
# rust-web-src lets cargo build std for it (-Zbuild-std); lld-22 links it.
# postgresql-client: pg_dump, pg_restore, psql for PostgreSQL backups.
for p in rustc-web cargo-web rust-web-src lld-22 pkg-config postgresql-client; do
  have_pkg "$p" || need_apt+=("$p")
done
if [ "$mode" = "--test" ]; then
  # busybox-static: the tests pack it into their own image (no registry here).
  # nginx: the proxy's nginx driver is tested against a private instance.
  # pebble (+ pebble-challtestsrv): the ACME CA the certificate tests use;
  # bind9: the RFC 2136 server for DNS-01; pdns-server with its SQLite
  # backend (+ sqlite3 to load the schema): the PowerDNS HTTP API provider.
  # postgresql: the servers the backup tests dump, restore and drill;
  # zstd: the peer pipe of the backup benchmark.
  # openssh-server: the real sshd the SFTP backup target is tested against.
  for p in chromium chromium-driver docker-compose busybox-static nginx pebble bind9 \
    pdns-server pdns-backend-sqlite3 sqlite3 postgresql zstd openssh-server; do
    have_pkg "$p" || need_apt+=("$p")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in
# Cargo.lock, or the generated JS does not match the wasm.
wb_version="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' "$root/Cargo.lock")"
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
  echo "installing wasm-bindgen-cli $wb_version"
  # Not --locked: its lockfile wants a crate release the registry here lacks.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi
# The wasm-opt crate builds binaryen 116 from source. Debian's binaryen (108)
# silently breaks the bundle (see TOOLCHAIN.md), so never use that one.
if ! wasm-opt --version 2>/dev/null | grep -q "version 116"; then
  echo "installing wasm-opt 116"
  cargo install wasm-opt --version 0.116.1 --locked
fi
if [ "$mode" = "--test" ]; then
  # aiosmtpd: a real SMTP server the e-mail notification test sends through.
  if ! python3 -c "import aiosmtpd" 2>/dev/null; then
    echo "installing aiosmtpd"
    python3 -m pip install --quiet "aiosmtpd==1.4.6"
  fi
  # moto: a real S3 API with signature checks, for the S3 backup target.
  if ! python3 -c "import moto, moto.server, boto3; assert moto.__version__ == '5.2.1'" 2>/dev/null; then
    echo "installing moto[server] 5.2.1"
    python3 -m pip install --quiet "moto[server]==5.2.1"
  fi
  if ! cargo sqlx --version 2>/dev/null | grep -q "0.8.6"; then
    echo "installing sqlx-cli 0.8.6"
    cargo install sqlx-cli --version 0.8.6 --locked --no-default-features --features sqlite,rustls
  fi
fi
