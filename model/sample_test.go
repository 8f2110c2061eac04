package model

import (
	"testing"

	"asbm/weights"
)

// TestSampleChunks checks the chunk sizes the browser client asks for.
func TestSampleChunks(t *testing.T) {
	// A U-Net with levels of 4 channels at 4×4 and 8 at 2×2: the up path concatenates 8 + 8 = 16
	// channels at 2×2, upsamples the 8 to 4×4 and concatenates the 4 of the skip: 12·16 = 192 values.
	tinyUNet := weights.Arch{Kind: "unet", Dim: 2 * 4 * 4, Channels: 2, Height: 4, Width: 4, Base: 4,
		Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}
	tinyMLP := weights.Arch{Kind: "mlp", Dim: 3, Hidden: 16, Layers: 2, Fourier: 4}
	if got := rowValues(tinyUNet); got != 192 {
		t.Errorf("rowValues(tinyUNet) = %d, want 192", got)
	}
	if got := rowValues(tinyMLP); got != 16 {
		t.Errorf("rowValues(tinyMLP) = %d, want 16", got)
	}
	mnist := weights.Arch{Kind: "unet", Dim: 784, Channels: 1, Height: 28, Width: 28, Base: 16, Mults: []int{1, 2, 2},
		ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}
	// Levels of 16, 32, 32 channels; at 28×28 the up path concatenates 32 + 16 = 48 channels.
	if got := rowValues(mnist); got != 48*28*28 {
		t.Errorf("rowValues(mnist) = %d, want %d", got, 48*28*28)
	}
	if got := GPUChunk(mnist, 128<<20); got != (64<<20)/(4*48*28*28) {
		t.Errorf("GPUChunk(mnist, 128 MiB) = %d", got)
	}
	if got := GPUChunk(mnist, 1000); got != 1 {
		t.Errorf("GPUChunk with a tiny limit = %d, want 1", got)
	}
	if got := GPUChunk(tinyMLP, 1<<40); got != MaxPoints {
		t.Errorf("GPUChunk with a huge limit = %d, want MaxPoints", got)
	}
	f := RowFLOPs(mnist)
	if f != UNetFLOPs(mnist) || f < 40e6 || f > 60e6 {
		t.Errorf("RowFLOPs(mnist) = %d, want UNetFLOPs ≈ 47e6", f)
	}
	// MLP 3+8 → 16 → 16 → 3: 2·(11·16 + 16·16 + 16·3).
	if got := RowFLOPs(tinyMLP); got != 2*(11*16+16*16+16*3) {
		t.Errorf("RowFLOPs(tinyMLP) = %d", got)
	}
	if got := CPUChunk(mnist, 3*f+1); got != 3 {
		t.Errorf("CPUChunk(mnist, 3 rows' FLOPs) = %d, want 3", got)
	}
	if got := CPUChunk(mnist, 1); got != 1 {
		t.Errorf("CPUChunk below one row = %d, want 1", got)
	}
}
