#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the build and the tests
# need, builds the binaries the end-to-end tests start, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
