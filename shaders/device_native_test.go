//go:build !js

package shaders

import (
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
)

// TestHasF16MatchesAdapter: the default device has shader-f16 exactly when its adapter offers it
// (lavapipe does), and the device itself lists the feature then.
func TestHasF16MatchesAdapter(t *testing.T) {
	d := gpu(t)
	if d.f32Only {
		t.Skip("the test device was opened F32Only (ASBM_F32_ONLY=1)")
	}
	offered := d.host.adapter.HasFeature(wgpu.FeatureNameShaderF16)
	t.Logf("%s: adapter offers shader-f16 %v, device HasF16 %v", d.AdapterInfo(), offered, d.HasF16())
	if d.HasF16() != offered || d.gpu.HasFeature(wgpu.FeatureNameShaderF16) != offered {
		t.Errorf("adapter offers shader-f16 %v, HasF16 %v, device lists it %v", offered, d.HasF16(), d.gpu.HasFeature(wgpu.FeatureNameShaderF16))
	}
}
