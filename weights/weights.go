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
// Layers the number of hidden SiLU layers, Fourier the number of time frequencies.
type Arch struct {
	Kind    string `msgpack:"kind"`
	Dim     int    `msgpack:"dim"`
	Hidden  int    `msgpack:"hidden,omitempty"`
	Layers  int    `msgpack:"layers,omitempty"`
	Fourier int    `msgpack:"fourier,omitempty"`
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
