package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"asbm/weights"
)

// TestWeightsSubset checks ?nets=: the response decodes to the file's arch and metadata with
// exactly the named networks' tensors, byte for byte and in file order; the order and repeats of
// the names do not matter; a name the file lacks, or a malformed list, is a 400 naming the problem;
// ?v= with the file's hash makes it immutable, as for the whole file.
func TestWeightsSubset(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	whole, err := weights.Decode(fx.models["8gaussians.msgpack"])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fx.models["8gaussians.msgpack"])
	hash := hex.EncodeToString(sum[:])[:ShortHashLen]
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"gen", []string{"gen"}},
		{"score", []string{"score"}},
		{"score,control", []string{"control", "score"}},
		{"control,score,score", []string{"control", "score"}},
		{"score,control,gen", []string{"control", "gen", "score"}},
	} {
		res, body := get(t, ts.URL+"/weights/8gaussians.msgpack?nets="+c.query, "gzip")
		if res.StatusCode != 200 {
			t.Fatalf("nets=%s: HTTP %d: %s", c.query, res.StatusCode, body)
		}
		if ce := res.Header.Get("Content-Encoding"); ce != "" || res.ContentLength != int64(len(body)) {
			t.Errorf("nets=%s: Content-Encoding %q, Content-Length %d for %d bytes", c.query, ce, res.ContentLength, len(body))
		}
		if et, want := res.Header.Get("ETag"), `"`+hash+"-"+strings.Join(c.want, "-")+`"`; et != want {
			t.Errorf("nets=%s: ETag %s, want %s", c.query, et, want)
		}
		if cc := res.Header.Get("Cache-Control"); cc != NoCache {
			t.Errorf("nets=%s without v: Cache-Control %q", c.query, cc)
		}
		got, err := weights.Decode(body)
		if err != nil {
			t.Fatalf("nets=%s: %v", c.query, err)
		}
		if !got.Arch.Equal(whole.Arch) || got.Meta["dataset"] != whole.Meta["dataset"] || got.Meta["beta1"] != whole.Meta["beta1"] {
			t.Errorf("nets=%s: arch or meta changed: %+v %v", c.query, got.Arch, got.Meta)
		}
		var want []weights.Tensor
		for _, tn := range whole.Tensors {
			p, _, _ := strings.Cut(tn.Name, "/")
			for _, n := range c.want {
				if p == n {
					want = append(want, tn)
				}
			}
		}
		if len(got.Tensors) != len(want) {
			t.Fatalf("nets=%s: %d tensors, want %d", c.query, len(got.Tensors), len(want))
		}
		for i := range want {
			g, w := got.Tensors[i], want[i]
			if g.Name != w.Name || g.DType != w.DType || string(g.Data) != string(w.Data) {
				t.Errorf("nets=%s: tensor %d is %s, want %s (or its bytes differ)", c.query, i, g.Name, w.Name)
			}
		}
	}
	res, _ := get(t, ts.URL+"/weights/8gaussians.msgpack?nets=gen&v="+hash, "")
	if cc := res.Header.Get("Cache-Control"); res.StatusCode != 200 || cc != Immutable {
		t.Errorf("nets=gen&v=<hash>: HTTP %d, Cache-Control %q, want %q", res.StatusCode, cc, Immutable)
	}
	for _, c := range []struct{ query, says string }{
		{"gen", "(it has baseline, score)"}, // moons has no generator
		{"", "network names"},
		{"score,,control", "network names"},
		{"score/l0.w", "network names"},
	} {
		res, body := get(t, ts.URL+"/weights/moons.msgpack?nets="+c.query, "")
		if res.StatusCode != 400 || !strings.Contains(string(body), c.says) {
			t.Errorf("moons nets=%q: HTTP %d %s, want 400 saying %q", c.query, res.StatusCode, body, c.says)
		}
	}
	if res, _ := get(t, ts.URL+"/weights/broken.msgpack?nets=score", ""); res.StatusCode != 400 {
		t.Errorf("a broken file's subset: HTTP %d, want 400", res.StatusCode)
	}
}
