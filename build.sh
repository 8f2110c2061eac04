#!/usr/bin/env bash
# build.sh builds the browser site, serves it, or runs every check.
#
#   ./build.sh build   build dist/: asbm.wasm (+ .br, .gz), the page, wasm_exec.js, and dist/backend
#   ./build.sh serve   build, then serve dist/ and weights/ on 127.0.0.1:8080 (ADDR=host:port overrides)
#   ./build.sh test    install what the tests need if missing, then gofmt, go vet (native and js/wasm),
#                      go test ./..., the wasm client's tests under Node.js, a short fuzz run, the
#                      site build and the headless-browser test
#   ./build.sh bench-browser [args]   build, then time the page's U-Net against TensorFlow.js in
#                      headless Chromium (site/bench/run.mjs; needs what `test` installs)
#
# The test verb is written for a fresh Debian machine run as root: it installs chromium (whose
# SwiftShader gives headless WebGPU), mesa-vulkan-drivers + libvulkan1 (lavapipe, for the native
# WebGPU tests), dataset-fashion-mnist and fonts-noto-color-emoji (the image data sets' loaders are
# tested on the real files), libopenblas-dev (the CPU engine's fast matrix multiply, loaded at run
# time), python3-torch, python3-numpy and python3-msgpack (the PyTorch reference of the U-Net),
# wabt (wat2wasm, which build assembles the CPU path's SIMD kernels with; build installs it too),
# Node.js if absent, and playwright-core from site/package-lock.json. It never downloads a browser of
# its own.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
DIST=dist

section() { printf '\n==== %s ====\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# simd_kernels assembles the CPU path's WebAssembly SIMD kernels (wasm/simd/kernels.wat) into
# wasm/simd/kernels.wasm, which the client embeds when built with -tags asbmsimd (installing
# Debian's wabt for wat2wasm if it is missing).
simd_kernels() {
	if ! command -v wat2wasm >/dev/null; then
		echo "installing: wabt (wat2wasm)"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wabt ||
			{ as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wabt; }
	fi
	wat2wasm wasm/simd/kernels.wat -o wasm/simd/kernels.wasm
}

build() {
	section "build: dist/ (wasm client, page, wasm_exec.js, backend)"
	command -v go >/dev/null || die "go is not on PATH (Go 1.26 is needed)"
	rm -rf "$DIST"
	mkdir -p "$DIST"
	simd_kernels
	GOOS=js GOARCH=wasm go build -tags asbmsimd -trimpath -ldflags "-s -w" -o "$DIST/asbm.wasm" ./wasm
	# Keep all three: the server sends the .br to clients that accept br, the .gz to those that
	# accept only gzip, the raw file to the rest. Brotli at quality 11 (pure Go, ~20 s) is done here
	# once rather than at every server start (backend/server/precompress says more).
	gzip -9 -n -c "$DIST/asbm.wasm" >"$DIST/asbm.wasm.gz"
	go run ./backend/server/precompress "$DIST/asbm.wasm" >/dev/null
	# The page: top-level files of site/ only (site/test and site/node_modules stay out).
	find site -maxdepth 1 -type f \( -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.svg' \
		-o -name '*.png' -o -name '*.ico' \) -exec cp {} "$DIST/" \;
	# wasm_exec.js must match the toolchain that built asbm.wasm, so it is copied, never committed.
	cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" "$DIST/"
	go build -o "$DIST/backend" ./backend
	printf 'asbm.wasm %s bytes, brotli %s bytes, gzip %s bytes\n' "$(wc -c <"$DIST/asbm.wasm")" \
		"$(wc -c <"$DIST/asbm.wasm.br")" "$(wc -c <"$DIST/asbm.wasm.gz")"
}

serve() {
	build
	local addr="${ADDR:-127.0.0.1:8080}"
	section "serve: http://$addr/ (Ctrl-C stops)"
	exec go run ./backend serve --site "$DIST" --weights weights --addr "$addr"
}

# as_root runs a command as root (directly, or through sudo when available).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "installing packages needs root: run ./build.sh test as root, or run as root: $*"
	fi
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

setup() {
	section "setup: system packages"
	local missing=()
	for p in chromium mesa-vulkan-drivers libvulkan1 gzip dataset-fashion-mnist fonts-noto-color-emoji \
		libopenblas-dev python3-torch python3-numpy python3-msgpack wabt; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		missing+=(nodejs npm)
	fi
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "installing: ${missing[*]}"
		as_root apt-get update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	else
		echo "present: chromium mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist fonts-noto-color-emoji libopenblas-dev python3-torch node $(node --version)"
	fi
	[ "$(node_major)" -ge 20 ] || die "Node.js $(node --version 2>/dev/null) is too old: playwright-core needs Node ≥ 20"
	[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing after the install"

	section "setup: npm ci (site/)"
	if [ ! -f site/node_modules/playwright-core/package.json ] ||
		[ site/package-lock.json -nt site/node_modules/.package-lock.json ]; then
		(cd site && npm ci --no-audit --no-fund)
	else
		echo "site/node_modules is up to date"
	fi
}

test_all() {
	setup

	section "check: gofmt"
	local bad
	bad=$(gofmt -l $(find . -name '*.go' -not -path './site/node_modules/*' -not -path "./$DIST/*" -not -path './.git/*'))
	if [ -n "$bad" ]; then
		printf 'gofmt would change:\n%s\n' "$bad"
		die "run gofmt -w on the files above"
	fi
	echo ok

	section "check: go vet (native)"
	go vet ./...

	section "test: the CPU kernels without cgo (the pure-Go fallback builds and passes alone)"
	CGO_ENABLED=0 go vet ./backend/cpu/kern
	CGO_ENABLED=0 go test -count=1 ./backend/cpu/kern

	section "check: go vet (GOOS=js GOARCH=wasm, with and without the SIMD kernels)"
	simd_kernels
	GOOS=js GOARCH=wasm go vet ./wasm ./shaders
	GOOS=js GOARCH=wasm go vet -tags asbmsimd ./wasm

	section "test: go test ./... (WebGPU, OpenBLAS and PyTorch must be found: ASBM_REQUIRE_GPU, _OPENBLAS, _TORCH)"
	local xdg
	xdg=$(mktemp -d)
	ASBM_REQUIRE_GPU=1 ASBM_REQUIRE_DATA=1 ASBM_REQUIRE_OPENBLAS=1 ASBM_REQUIRE_TORCH=1 XDG_RUNTIME_DIR="$xdg" \
		go test -count=1 ./...

	section "test: GOOS=js GOARCH=wasm go test ./wasm (under Node.js, SIMD kernels against plain Go)"
	ASBM_REQUIRE_SIMD=1 GOOS=js GOARCH=wasm go test -tags asbmsimd -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm

	# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious "context deadline
	# exceeded" failure when a -fuzztime duration expires mid-execution (golang/go#75804, fixed in
	# Go 1.27); a count has no deadline. 600,000 inputs take about 15 s here (about what the 20 s run did).
	section "test: fuzz weights.Decode (600,000 inputs)"
	go test ./weights -run '^$' -fuzz FuzzDecode -fuzztime 600000x

	build

	section "test: headless browser (node --test site/test)"
	XDG_RUNTIME_DIR="$xdg" node --test site/test/*.test.mjs
	rm -rf "$xdg"
}

bench_browser() {
	build
	xdg=$(mktemp -d)
	XDG_RUNTIME_DIR="$xdg" node site/bench/run.mjs "$@"
	rm -rf "$xdg"
}

case "${1:-}" in
build) build ;;
bench-browser) shift; bench_browser "$@" ;;
serve) serve ;;
test) test_all ;;
*)
	echo "usage: ./build.sh build|serve|test|bench-browser" >&2
	exit 2
	;;
esac
