package asbm

import (
	"fmt"
	"math/rand/v2"
)

// Buffer is the stage-1 replay buffer of asbm.md §2.5: rows of a fixed width (for AM the fields
// x0 | x1 | a1, for CM x0 | x1, each dim wide), first in first out, keeping only the last Cap rows
// (components/buffer.py keeps data[-buffer_size:]). Its contents are part of the checkpoint.
type Buffer struct {
	width, capRows int
	data           []float32 // oldest row first
}

// NewBuffer returns an empty buffer of rows of width floats holding at most capRows rows.
func NewBuffer(width, capRows int) (*Buffer, error) {
	if width < 1 || capRows < 1 {
		return nil, fmt.Errorf("buffer: width %d and capacity %d must be ≥ 1", width, capRows)
	}
	return &Buffer{width: width, capRows: capRows}, nil
}

// Width is the number of floats per row.
func (b *Buffer) Width() int { return b.width }

// Cap is the most rows the buffer keeps.
func (b *Buffer) Cap() int { return b.capRows }

// Len is the number of rows held.
func (b *Buffer) Len() int { return len(b.data) / b.width }

// Append adds whole rows at the new end and drops the oldest beyond Cap.
func (b *Buffer) Append(rows []float32) error {
	if len(rows)%b.width != 0 {
		return fmt.Errorf("buffer: %d values are not whole rows of width %d", len(rows), b.width)
	}
	b.data = append(b.data, rows...)
	if over := len(b.data) - b.capRows*b.width; over > 0 {
		n := copy(b.data, b.data[over:])
		b.data = b.data[:n]
	}
	return nil
}

// Reset empties the buffer (asbm.md §2.5: both buffers are emptied at every stage switch).
func (b *Buffer) Reset() { b.data = b.data[:0] }

// Data is the buffer's rows, oldest first. The slice is the buffer's own: do not modify it.
func (b *Buffer) Data() []float32 { return b.data }

// SetData replaces the contents with rows (a checkpoint's Data), keeping the last Cap of them.
func (b *Buffer) SetData(rows []float32) error {
	if len(rows)%b.width != 0 {
		return fmt.Errorf("buffer: %d values are not whole rows of width %d", len(rows), b.width)
	}
	b.data = b.data[:0]
	return b.Append(rows)
}

// Minibatches is one shuffled pass over the rows: a random permutation cut into ⌈Len/batch⌉ index
// sets of size batch, the last one possibly smaller (a shuffled DataLoader without drop_last, so a
// full 20000-row buffer at batch 128 gives 157 steps, asbm.md §2.5).
func (b *Buffer) Minibatches(r *rand.Rand, batch int) ([][]int, error) {
	if batch < 1 {
		return nil, fmt.Errorf("buffer: batch %d must be ≥ 1", batch)
	}
	perm := r.Perm(b.Len())
	var out [][]int
	for lo := 0; lo < len(perm); lo += batch {
		out = append(out, perm[lo:min(lo+batch, len(perm))])
	}
	return out, nil
}

// Field gathers field f (columns f·dim … (f+1)·dim−1) of the rows idx into a new slice: with the AM
// layout x0 | x1 | a1, Field(idx, 1, dim) is the x1 of those rows.
func (b *Buffer) Field(idx []int, f, dim int) []float32 {
	out := make([]float32, 0, len(idx)*dim)
	for _, i := range idx {
		row := b.data[i*b.width : (i+1)*b.width]
		out = append(out, row[f*dim:(f+1)*dim]...)
	}
	return out
}

// interleave builds buffer rows from whole-batch fields of n rows each, dim wide: row i is
// fields[0][i] | fields[1][i] | ….
func interleave(n, dim int, fields ...[]float32) []float32 {
	out := make([]float32, 0, n*dim*len(fields))
	for i := 0; i < n; i++ {
		for _, f := range fields {
			out = append(out, f[i*dim:(i+1)*dim]...)
		}
	}
	return out
}
