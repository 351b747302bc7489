#!/usr/bin/env bash
# Installs what the test suite needs when it is missing, so `make test` passes on a new
# machine. Uses apt-get (as root, or through sudo when there is one). Debian bookworm names.
#
#   redis-server                  the shared-state tests' real Redis
#   curl                          the JSON transcoding test's client
#   wabt                          wat2wasm, for WAT test modules and examples/wat
#   clang, lld, wasi-libc,        examples/c: clang --target=wasm32-wasi links with wasm-ld
#   libclang-rt-N-dev-wasm32      against wasi-libc and compiler-rt's wasm32 builtins
#   nodejs, npm                   examples/assemblyscript (the npm packages themselves come
#                                 from each example's package-lock.json, by npm ci, in the
#                                 build step: see internal/wasmbuild)
#   docker-registry               the CNCF distribution registry, for the registry's interop
#                                 tests (plexus pushes to it and pulls back from it)
#   rustc, libstd-rust-dev-wasm32 examples/gate/rust: rustc alone (no cargo, no crates) for
#                                 wasm32-unknown-unknown, when no rustc here has its std
#
# Go-built filters need nothing beyond Go itself (GOOS=wasip1, no TinyGo).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo="sudo"
fi
updated=""
install() {
	[ $# -gt 0 ] || return 0
	echo "deps: installing $*"
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "$updated" ]; then
		$sudo apt-get update -qq
		updated=1
	fi
	$sudo apt-get install -y -qq --no-install-recommends "$@"
}

need=()
# command or file -> Debian package
have redis-server || need+=(redis-server)
have curl || need+=(curl)
have wat2wasm || need+=(wabt)
have docker-registry || need+=(docker-registry)
have clang || need+=(clang)
have wasm-ld || need+=(lld)
[ -e /usr/lib/wasm32-wasi/libc.a ] || [ -n "${WASI_SYSROOT:-}" ] || need+=(wasi-libc)
have node || need+=(nodejs)
have npm || need+=(npm)
install "${need[@]}"

# Rust for wasm32-unknown-unknown: Debian's rustc with its wasm32 std, unless a rustc on the
# PATH (rustup's, say) has that target already.
rust_wasm=""
for rc in rustc /usr/bin/rustc; do
	if sysroot="$("$rc" --print sysroot 2>/dev/null)" && [ -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ]; then
		rust_wasm=1
		break
	fi
done
if [ -z "$rust_wasm" ]; then
	install rustc libstd-rust-dev-wasm32
fi

# compiler-rt's wasm32 builtins come in a package versioned like clang itself
# (libclang-rt-14-dev-wasm32 for bookworm's clang 14): ask the clang that is there.
rt="$(clang --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null || true)"
if [ -z "$rt" ] || [ ! -e "$rt" ]; then
	major="$(clang -dumpversion | cut -d. -f1)"
	install "libclang-rt-${major}-dev-wasm32"
fi

# The AssemblyScript compiler the example pins wants Node.js 20 or newer; Debian bookworm's
# own nodejs is 18. Say so rather than fail later inside npm.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
	echo "deps: warning: Node.js $(node --version 2>/dev/null || echo '(none)') is older than 20, which examples/assemblyscript needs (assemblyscript 0.28)" >&2
fi
