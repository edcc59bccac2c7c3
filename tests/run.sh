#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the build and the tests
# need, builds the binaries the end-to-end tests start, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# python-nomad: the stock Nomad API client the compatibility test drives.
python3 -c 'import nomad' 2>/dev/null || python3 -m pip install -q python-nomad \
  || python3 -m pip install -q --break-system-packages python-nomad

# The example plugins (examples/plugins) that the plugin transport tests build include an
# Extism module for wasm32-unknown-unknown.
rustup target add wasm32-unknown-unknown

cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
