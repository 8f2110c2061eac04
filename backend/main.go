// Command backend trains, samples, evaluates, exports and serves ASBM models.
//
//	backend train  --data toy:8gaussians --out weights/8gaussians.msgpack
//	backend sample --model weights/8gaussians.msgpack --nfe 8 --sampler sde --seed 1 --out pts.csv
//	backend eval   --model weights/8gaussians.msgpack [--json]
//	backend export --ckpt runs/8gaussians/checkpoint.msgpack --out weights/8gaussians.msgpack
//	backend serve  --site dist --weights weights --addr 127.0.0.1:8080
//	backend plot   --model runs/8gaussians/checkpoint.msgpack --out loss.png
//
// Bad input gives one clear line on stderr and a non-zero exit status (2 for usage errors).
//
// This package is the wiring only: each verb lives in the package named for what it does
// (backend/train: train and export; backend/sample; backend/eval; backend/plot; backend/bench;
// backend/torchimport: import; backend/fid: classifier; backend/server: serve), and backend/cli holds what they share.
// docs/architecture.md draws the packages and their imports.
package main

import (
	"io"
	"os"

	"asbm/backend/bench"
	"asbm/backend/cli"
	"asbm/backend/eval"
	"asbm/backend/plot"
	"asbm/backend/sample"
	"asbm/backend/torchimport"
	"asbm/backend/train"
)

// verbs are the sub-commands; each lives in the package named for what it does.
var verbs = map[string]cli.Verb{
	"train":      {Summary: "train ASBM (stage 1, stage 2, distillation) and the memoryless baseline", Run: train.Command},
	"sample":     {Summary: "draw samples from a model file and write CSV or a PNG scatter", Run: sample.Command},
	"eval":       {Summary: "print the quality tables: sliced W2 (toys) or FID (images) vs NFE, straightness, couplings, inversion", Run: eval.Command},
	"export":     {Summary: "write a model file from a training checkpoint", Run: train.ExportCommand},
	"serve":      {Summary: "serve the built site and the weights over HTTP", Run: runServe},
	"classifier": {Summary: "train the FID feature network of an image data set (backend/fid)", Run: runClassifier},
	"bench":      {Summary: "time the U-Net's forward and training step on the CPU and GPU engines against each one's matmul ceiling", Run: bench.Command},
	"import":     {Summary: "write a model file from a PyTorch checkpoint (torch/unet.py's save_checkpoint)", Run: torchimport.Command},
	"plot":       {Summary: "draw a training run's loss curves (one panel per phase), or FID vs NFE from eval reports, as a PNG", Run: plot.Command},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, for the tests.
func run(args []string, stdout, stderr io.Writer) int { return cli.Main(verbs, args, stdout, stderr) }
