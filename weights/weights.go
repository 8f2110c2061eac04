// Package weights is the model file format shared by the trainer (backend) and the browser client
// (wasm): a msgpack map holding a magic string, a format version, the network architecture, named
// tensors stored as raw little-endian f32 or f16 bytes, and free-form metadata.
package weights

// Magic is the first field of every weights file.
const Magic = "ASBM"

// Version is the newest format version this package reads and the one it writes.
const Version = 1

// Arch describes a network well enough to rebuild it. Kind selects the family; the other fields are
// that family's sizes. For Kind "mlp" (asbm.md §6.1): Dim is the data dimension, Hidden the width,
// Layers the number of hidden SiLU layers, Fourier the number of time frequencies. For Kind "unet"
// (the image network, model/unet.go): Dim = Channels·Height·Width, Fourier time frequencies, a
// time embedding of width TimeEmb, Base·Mults[l] channels at level l (each level halves the
// resolution), ResBlocks residual blocks per level, GroupNorm with Groups groups. The U-Net fields
// are written only when non-zero, so MLP files are unchanged by their existence.
type Arch struct {
	Kind      string `msgpack:"kind"`
	Dim       int    `msgpack:"dim"`
	Hidden    int    `msgpack:"hidden,omitempty"`
	Layers    int    `msgpack:"layers,omitempty"`
	Fourier   int    `msgpack:"fourier,omitempty"`
	Channels  int    `msgpack:"channels,omitempty"`
	Height    int    `msgpack:"height,omitempty"`
	Width     int    `msgpack:"width,omitempty"`
	Base      int    `msgpack:"base,omitempty"`
	Mults     []int  `msgpack:"mults,omitempty"`
	ResBlocks int    `msgpack:"res_blocks,omitempty"`
	Groups    int    `msgpack:"groups,omitempty"`
	TimeEmb   int    `msgpack:"time_emb,omitempty"`
}

// intFields lists Arch's integer fields by their file names, in file order.
func (a *Arch) intFields() []struct {
	name string
	v    *int
} {
	return []struct {
		name string
		v    *int
	}{{"dim", &a.Dim}, {"hidden", &a.Hidden}, {"layers", &a.Layers}, {"fourier", &a.Fourier},
		{"channels", &a.Channels}, {"height", &a.Height}, {"width", &a.Width}, {"base", &a.Base},
		{"res_blocks", &a.ResBlocks}, {"groups", &a.Groups}, {"time_emb", &a.TimeEmb}}
}

// Tensor is one named array. Data holds the values as little-endian bytes of DType ("f32" or "f16"),
// row-major in Shape order.
type Tensor struct {
	Name  string `msgpack:"name"`
	DType string `msgpack:"dtype"`
	Shape []int  `msgpack:"shape"`
	Data  []byte `msgpack:"data"`
}

// File is a whole weights file.
type File struct {
	Magic   string         `msgpack:"magic"`
	Version int            `msgpack:"version"`
	Arch    Arch           `msgpack:"arch"`
	Tensors []Tensor       `msgpack:"tensors"`
	Meta    map[string]any `msgpack:"meta"`
}

// Equal reports whether a and b describe the same network.
func (a Arch) Equal(b Arch) bool {
	if len(a.Mults) != len(b.Mults) {
		return false
	}
	for i := range a.Mults {
		if a.Mults[i] != b.Mults[i] {
			return false
		}
	}
	af, bf := a.intFields(), b.intFields()
	for i := range af {
		if *af[i].v != *bf[i].v {
			return false
		}
	}
	return a.Kind == b.Kind
}
