// Command mkfixture writes the tiny image model the browser tests load: a U-Net with random,
// untrained weights (3 channels, 8×8 pixels) under every prefix a model file has (score/, control/,
// gen/, baseline/), and the meta keys the loaders read. It is deterministic, so the committed file
// can be checked against this program (see main_test.go).
//
//	go run ./site/test/mkfixture                # writes site/test/fixtures/tiny-unet.msgpack
//	go run ./site/test/mkfixture -out FILE
//	go run ./site/test/mkfixture -out big.msgpack -arch '{"Channels": 3, "Height": 32, "Width": 32, "Base": 32, "Mults": [1, 2, 2], "ResBlocks": 2, "Groups": 8, "TimeEmb": 128, "Fourier": 16}'
//	                                              # the same kind of file for another U-Net (the browser benchmark's)
//
// The output layers are random, not zero as after NewNet (asbm.md §2.1), so every network gives
// non-constant images: a zero output layer would make the generator return x1/α1, pure noise, and the
// score zero.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"asbm/model"
	"asbm/weights"
)

// Arch is the fixture's network: small enough for SwiftShader (about 0.1 MFLOP per image) but with
// every op of the U-Net (two levels, a channel change so the 1×1 skip conv exists, group norm with
// more than one group, colour images).
var Arch = weights.Arch{Kind: "unet", Dim: 3 * 8 * 8, Channels: 3, Height: 8, Width: 8, Base: 4,
	Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}

// Prefixes are the networks of a model file, each from its own seed.
var Prefixes = []string{"score/", "control/", "gen/", "baseline/"}

// Build returns the fixture model file.
func Build() (*weights.File, error) { return BuildArch(Arch) }

// BuildArch returns a fixture model file of any U-Net arch.
func BuildArch(a weights.Arch) (*weights.File, error) {
	if err := model.CheckArch(a); err != nil {
		return nil, err
	}
	f := weights.New(a)
	names, shapes := model.ParamShapes(a)
	for i, prefix := range Prefixes {
		seed := uint64(100 + i)
		net, err := model.NewNet(a, seed)
		if err != nil {
			return nil, err
		}
		// out.w, out.b: the same fan-in bound as the other convs (fan-in = ch_0·3·3).
		r := rand.New(rand.NewPCG(seed, 0x6f7574))
		sh := shapes[len(shapes)-2]
		bound := 1 / math.Sqrt(float64(sh[1]*sh[2]*sh[3]))
		for _, name := range []string{"out.w", "out.b"} {
			p := net.Params[name]
			for j := range p {
				p[j] = float32((2*r.Float64() - 1) * bound)
			}
		}
		for j, name := range names {
			f.AddF32(prefix+name, shapes[j], net.Params[name])
		}
	}
	f.Meta["dataset"] = "tiny-unet"
	if a.Height != Arch.Height || a.Base != Arch.Base || a.ResBlocks != Arch.ResBlocks {
		f.Meta["dataset"] = "random-unet"
	}
	f.Meta["note"] = "random untrained weights for the browser tests; regenerate with go run ./site/test/mkfixture"
	// The ASBM defaults (asbm.md §1.2) and the memoryless baseline's β1.
	f.Meta["beta0"] = 0.1
	f.Meta["beta1"] = 4.0
	f.Meta["sigma_v"] = 1.0
	f.Meta["baseline_beta1"] = 20.0
	return f, nil
}

// Encode returns the fixture's bytes.
func Encode() ([]byte, error) {
	f, err := Build()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := weights.Encode(&b, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func main() {
	out := flag.String("out", "site/test/fixtures/tiny-unet.msgpack", "where to write the model file")
	archJSON := flag.String("arch", "", "another U-Net as JSON with weights.Arch's field names (Kind and Dim are filled in)")
	flag.Parse()
	a := Arch
	if *archJSON != "" {
		a = weights.Arch{}
		if err := json.Unmarshal([]byte(*archJSON), &a); err != nil {
			fmt.Fprintln(os.Stderr, "mkfixture: -arch:", err)
			os.Exit(2)
		}
		a.Kind, a.Dim = "unet", a.Channels*a.Height*a.Width
	}
	f, err := BuildArch(a)
	if err == nil {
		err = weights.WriteFile(*out, f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkfixture:", err)
		os.Exit(1)
	}
	st, _ := os.Stat(*out)
	fmt.Printf("wrote %s (%d bytes)\n", *out, st.Size())
}
