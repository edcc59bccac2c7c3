#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the build and the tests
# need, builds the binaries the end-to-end tests start, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v etcd >/dev/null || need+=(etcd-server)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)  # the exec driver's tests run ps inside tasks
# The DNS server's tests ask it with dig; its benchmark compares it with dnsmasq.
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)  # and make network namespaces
command -v cc >/dev/null || need+=(gcc)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# PyJWT: the standard JWT library the workload identity test verifies tasks' JWTs with.
dpkg -s python3-jwt >/dev/null 2>&1 || need+=(python3-jwt)
# The docker driver's tests: images are built offline FROM scratch with Debian's static
# busybox; pulls go to a local registry (Debian's docker-registry, distribution 2.8) behind
# basic auth (htpasswd). The engine itself is on these machines already.
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)  # certificates for the TLS engine test
# The CNI runtime's tests (core/cni) run Debian's CNI plugins (bridge, host-local,
# portmap, loopback from /usr/lib/cni) in real network namespaces; portmap needs iptables.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
# The go-plugin interop tests (tests/tests/go_plugin.rs, tests/src/go.rs): Go and HashiCorp's
# go-plugin as Debian packages them, built offline in GOPATH mode. Debian's go-plugin package
# does not depend on the gRPC library it imports, hence golang-google-grpc-dev.
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/hashicorp/go-plugin ] || need+=(golang-github-hashicorp-go-plugin-dev)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || need+=(golang-google-grpc-dev)
# The network benchmark's peer (tests/go/cnipeer): the reference CNI runtime, libcni.
[ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ] || need+=(golang-github-appc-cni-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# python-nomad: the stock Nomad API client the compatibility test drives.
python3 -c 'import nomad' 2>/dev/null || python3 -m pip install -q python-nomad \
  || python3 -m pip install -q --break-system-packages python-nomad

# PyJWT with RS256 support, for a python3 that does not see Debian's python3-jwt (pyenv).
python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install -q 'pyjwt[crypto]' \
  || python3 -m pip install -q --break-system-packages 'pyjwt[crypto]'

# The example plugins (examples/plugins) that the plugin transport tests build include an
# Extism module for wasm32-unknown-unknown.
rustup target add wasm32-unknown-unknown

cargo build --workspace --bins
# Lints are part of the suite: warnings (the determinism bans of clippy.toml, unsafe blocks
# without a SAFETY comment) fail it.
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=2
