//go:build js && wasm && asbmsimd

package main

import _ "embed"

// simdWasm is the SIMD kernels' module, simd/kernels.wasm, which build.sh assembles from
// simd/kernels.wat with wat2wasm before building with -tags asbmsimd.
//
//go:embed simd/kernels.wasm
var simdWasm []byte
