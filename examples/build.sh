#!/usr/bin/env bash
# Builds the example filters by hand, each next to its source folder, where configs refer to
# them (module: file:examples/go/hello.wasm):
#
#   examples/go/NAME.wasm  examples/c/NAME.wasm  examples/assemblyscript/NAME.wasm
#   examples/wat/NAME.wasm  examples/gate/LANG.wasm (the gate example in seven languages)
#   bin/filters/NAME.wasm (plexus's own filters: filters/build.sh)
#
# Usage: examples/build.sh [go|c|assemblyscript|wat|gate|filters|PATH ...]   (no argument: all of them)
# The tests build the same sources with the same commands through internal/wasmbuild.
# scripts/deps.sh installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."

build_go() { # examples/go/NAME
	echo "go   $1.wasm"
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$1.wasm" "./$1"
}

build_c() { # examples/c/NAME, examples/gate/c
	echo "c    $1.wasm"
	local sysroot=()
	[ -n "${WASI_SYSROOT:-}" ] && sysroot=(--sysroot="$WASI_SYSROOT")
	clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Wno-unused-parameter \
		-Wl,--export=malloc -Wl,--strip-all -I sdk/c "${sysroot[@]}" -o "$1.wasm" "$1"/*.c
}

build_cpp() { # examples/gate/cpp: C++ without its standard library, wasi-libc only
	echo "c++  $1.wasm"
	local sysroot=()
	[ -n "${WASI_SYSROOT:-}" ] && sysroot=(--sysroot="$WASI_SYSROOT")
	clang++ -std=c++17 -fno-exceptions -fno-rtti -nostdlib++ --target=wasm32-wasi -O2 -mexec-model=reactor \
		-Wall -Wextra -Wno-unused-parameter -Wl,--export=malloc -Wl,--strip-all -I sdk/c "${sysroot[@]}" \
		-o "$1.wasm" "$1"/*.cc
}

build_rust() { # examples/gate/rust: rustc alone, no crates; Debian's has the wasm32 std
	echo "rust $1.wasm"
	local rustc=rustc
	if ! [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-unknown-unknown" ]; then
		rustc=/usr/bin/rustc
	fi
	"$rustc" --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib -C opt-level=s -C panic=abort \
		-C strip=symbols -C lto -o "$1.wasm" "$1"/*.rs
}

build_gate() { # examples/gate/LANG
	case "$(basename "$1")" in
	go | go-plexus) build_go "$1" ;;
	c) build_c "$1" ;;
	cpp) build_cpp "$1" ;;
	rust) build_rust "$1" ;;
	assemblyscript) build_as "$1" ;;
	wat) echo "wat  $1.wasm"; wat2wasm -o "$1.wasm" "$1/gate.wat" ;;
	*) echo "build.sh: no gate example $1" >&2; exit 2 ;;
	esac
}

build_as() { # examples/assemblyscript/NAME
	echo "as   $1.wasm"
	(cd "$1" && npm ci --no-audit --no-fund --loglevel=error &&
		./node_modules/.bin/asc assembly/index.ts --target release --outFile "../$(basename "$1").wasm")
}

build_wat() { # examples/wat/NAME.wat
	echo "wat  ${1%.wat}.wasm"
	wat2wasm -o "${1%.wat}.wasm" "$1"
}

build() {
	case "$1" in
	go) for d in examples/go/*/; do build_go "${d%/}"; done ;;
	c) for d in examples/c/*/; do build_c "${d%/}"; done ;;
	assemblyscript) for d in examples/assemblyscript/*/; do build_as "${d%/}"; done ;;
	wat) for f in examples/wat/*.wat; do build_wat "$f"; done ;;
	gate) for d in examples/gate/*/; do build_gate "${d%/}"; done ;;
	filters) filters/build.sh ;;
	examples/gate/*) build_gate "${1%/}" ;;
	examples/go/*) build_go "${1%/}" ;;
	examples/c/*) build_c "${1%/}" ;;
	examples/assemblyscript/*) build_as "${1%/}" ;;
	examples/wat/*.wat) build_wat "$1" ;;
	*) echo "build.sh: don't know how to build $1" >&2; exit 2 ;;
	esac
}

if [ $# -eq 0 ]; then
	set -- go c assemblyscript wat gate filters
fi
for a in "$@"; do
	build "$a"
done
