#!/usr/bin/env bash
# Builds the example filters by hand, each next to its source folder, where configs refer to
# them (module: file:examples/go/hello.wasm):
#
#   examples/go/NAME.wasm  examples/c/NAME.wasm  examples/assemblyscript/NAME.wasm
#   examples/wat/NAME.wasm  filters/NAME.wasm (plexus's own filters, in Go)
#
# Usage: examples/build.sh [go|c|assemblyscript|wat|filters|PATH ...]   (no argument: all of them)
# The tests build the same sources with the same commands through internal/wasmbuild.
# scripts/deps.sh installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."

build_go() { # examples/go/NAME
	echo "go   $1.wasm"
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$1.wasm" "./$1"
}

build_c() { # examples/c/NAME
	echo "c    $1.wasm"
	local sysroot=()
	[ -n "${WASI_SYSROOT:-}" ] && sysroot=(--sysroot="$WASI_SYSROOT")
	clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Wno-unused-parameter \
		-Wl,--export=malloc -Wl,--strip-all "${sysroot[@]}" -o "$1.wasm" "$1"/*.c
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
	filters) for d in filters/*/; do build_go "${d%/}"; done ;;
	examples/go/* | filters/*) build_go "${1%/}" ;;
	examples/c/*) build_c "${1%/}" ;;
	examples/assemblyscript/*) build_as "${1%/}" ;;
	examples/wat/*.wat) build_wat "$1" ;;
	*) echo "build.sh: don't know how to build $1" >&2; exit 2 ;;
	esac
}

if [ $# -eq 0 ]; then
	set -- go c assemblyscript wat filters
fi
for a in "$@"; do
	build "$a"
done
