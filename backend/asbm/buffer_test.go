package asbm_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"asbm/backend/asbm"
)

// TestBufferFIFO compares the buffer with a plain "append, keep the last cap rows" reference
// (components/buffer.py: data[-buffer_size:]) over random appends and resets.
func TestBufferFIFO(t *testing.T) {
	const width, capRows = 3, 10
	b, err := asbm.NewBuffer(width, capRows)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var ref []float32
	next := float32(0)
	for it := 0; it < 200; it++ {
		if r.IntN(15) == 0 {
			b.Reset()
			ref = nil
			continue
		}
		m := r.IntN(14)
		rows := make([]float32, m*width)
		for i := range rows {
			rows[i] = next
			next++
		}
		if err := b.Append(rows); err != nil {
			t.Fatal(err)
		}
		ref = append(ref, rows...)
		if len(ref) > capRows*width {
			ref = ref[len(ref)-capRows*width:]
		}
		if !slices.Equal(b.Data(), ref) || b.Len() != len(ref)/width {
			t.Fatalf("step %d: buffer %v (len %d), want %v", it, b.Data(), b.Len(), ref)
		}
	}
	if err := b.Append(make([]float32, width+1)); err == nil {
		t.Error("Append of a partial row: want an error")
	}
	if _, err := asbm.NewBuffer(0, 5); err == nil {
		t.Error("NewBuffer(0, 5): want an error")
	}
}

// TestBufferMinibatches: one pass covers every row exactly once in ⌈Len/batch⌉ batches (157 for a full
// 20000-row buffer at 128, asbm.md §2.5), the same seed gives the same order, and Field gathers columns.
func TestBufferMinibatches(t *testing.T) {
	b, _ := asbm.NewBuffer(2*3, 20000)
	rows := make([]float32, 25000*6)
	for i := range rows {
		rows[i] = float32(i)
	}
	if err := b.Append(rows); err != nil {
		t.Fatal(err)
	}
	bs, err := b.Minibatches(rand.New(rand.NewPCG(2, 2)), 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 157 {
		t.Fatalf("%d minibatches, want 157", len(bs))
	}
	seen := make([]int, b.Len())
	for k, idx := range bs {
		if want := min(128, b.Len()-128*k); len(idx) != want {
			t.Fatalf("batch %d has %d rows, want %d", k, len(idx), want)
		}
		for _, i := range idx {
			seen[i]++
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("row %d seen %d times", i, c)
		}
	}
	again, _ := b.Minibatches(rand.New(rand.NewPCG(2, 2)), 128)
	if !slices.Equal(bs[0], again[0]) {
		t.Error("same seed gave a different order")
	}
	// Field 1 of row i is columns 3…5 of the i-th kept row; the kept rows are the last 20000 appended.
	f := b.Field([]int{0, 7}, 1, 3)
	want := []float32{(5000*6 + 3), (5000*6 + 4), (5000*6 + 5), (5007*6 + 3), (5007*6 + 4), (5007*6 + 5)}
	if !slices.Equal(f, want) {
		t.Errorf("Field = %v, want %v", f, want)
	}
	c, _ := asbm.NewBuffer(6, 20000)
	if err := c.SetData(b.Data()); err != nil || !slices.Equal(c.Data(), b.Data()) {
		t.Errorf("SetData round trip failed: %v", err)
	}
	if _, err := b.Minibatches(rand.New(rand.NewPCG(2, 2)), 0); err == nil {
		t.Error("Minibatches(0): want an error")
	}
}
