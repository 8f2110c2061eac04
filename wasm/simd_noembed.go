//go:build js && wasm && !asbmsimd

package main

// simdWasm is empty in a client built without -tags asbmsimd (go vet, a plain go build): its CPU
// path runs the plain-Go kernels. build.sh builds with the tag (simd_embed.go).
var simdWasm []byte
