//go:build !js

package shaders

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// processCPU returns the CPU time this process has used, user and system, in milliseconds. A software
// adapter (lavapipe) runs the kernels on the process's own threads, so the CPU time of a dispatch
// measures its work while other programs share the cores (wall time then mostly measures them).
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// BenchmarkTrainStepKernels profiles one U-Net training step (-convbench.arch, -convbench.n) kernel
// by kernel: it records the Trainer's plan with one Step, then runs each of the step's dispatches
// (the plan and the AdamW updates) alone, waiting for each, b.N times, and logs every kernel's
// median CPU time summed over its dispatches, largest first, with the total (reported as
// step-cpu-ms). The CPU time of the process, not wall time: see processCPU. On a hardware GPU the
// numbers measure only the host side. E.g.
//
//	go test ./shaders/ -run '^$' -bench TrainStepKernels -benchtime 3x -args -convbench.arch=large
func BenchmarkTrainStepKernels(b *testing.B) {
	a, ok := convBenchArchs[*convBenchArch]
	if !ok {
		b.Fatalf("-convbench.arch %q: want large or emoji", *convBenchArch)
	}
	n := *convBenchN
	d := gpu(b)
	tm, err := NewTrainer(d, randomUNet(b, a, 1), AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		EMADecay: 0.99, GradClip: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer tm.Close()
	r := rand.New(rand.NewPCG(1, 2))
	if _, err := tm.Step(uniforms(r, n, 0, 1), normals(r, n*a.Dim, 1), nil, normals(r, n*a.Dim, 1)); err != nil {
		b.Fatal(err)
	}
	ops := append(append([]*op(nil), tm.plans[n].ops...), tm.adam...)
	times := make([][]float64, len(ops))
	for range b.N {
		for i, o := range ops {
			c0 := processCPU()
			submitAlone(b, d, o)
			if err := d.wait(); err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], processCPU()-c0)
		}
	}
	byKernel, count := map[string]float64{}, map[string]int{}
	var total float64
	for i, o := range ops {
		slices.Sort(times[i])
		t := times[i][len(times[i])/2]
		byKernel[o.k.name] += t
		count[o.k.name]++
		total += t
	}
	names := make([]string, 0, len(byKernel))
	for k := range byKernel {
		names = append(names, k)
	}
	slices.SortFunc(names, func(x, y string) int {
		switch {
		case byKernel[x] > byKernel[y]:
			return -1
		case byKernel[x] < byKernel[y]:
			return 1
		}
		return strings.Compare(x, y)
	})
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s, n = %d: %.0f CPU ms over %d dispatches\n", *convBenchArch, n, total, len(ops))
	for _, k := range names {
		fmt.Fprintf(&sb, "%-30s %4d dispatches %9.1f ms %5.1f%%\n", k, count[k], byKernel[k], 100*byKernel[k]/total)
	}
	b.Log(sb.String())
	b.ReportMetric(total, "step-cpu-ms")
}
