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
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// usageError marks errors caused by bad flags or arguments; they exit with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// verb is one sub-command.
type verb struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

var verbs = map[string]verb{
	"train":      {"train ASBM (stage 1, stage 2, distillation) and the memoryless baseline", runTrain},
	"sample":     {"draw samples from a model file and write CSV or a PNG scatter", runSample},
	"eval":       {"print the quality tables: sliced W2 (toys) or FID (images) vs NFE, straightness, couplings, inversion", runEval},
	"export":     {"write a model file from a training checkpoint", runExport},
	"serve":      {"serve the built site and the weights over HTTP", runServe},
	"classifier": {"train the FID feature network of an image data set (backend/fid)", runClassifier},
	"bench":      {"time the U-Net's forward and training step on the CPU and GPU engines against each one's matmul ceiling", runBench},
	"plot":       {"draw a training run's loss curves (one panel per phase) as a PNG", runPlot},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "backend: unknown command %q (want one of %s; see backend --help)\n", args[0], strings.Join(verbNames(), ", "))
		return 2
	}
	err := v.run(args[1:], stdout)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "backend %s: %v\n", args[0], err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func verbNames() []string {
	var names []string
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: backend <command> [flags]\n\ncommands:")
	for _, n := range verbNames() {
		fmt.Fprintf(w, "  %-7s %s\n", n, verbs[n].summary)
	}
	fmt.Fprintln(w, "\nbackend <command> --help lists a command's flags.")
}

// newFlags returns a flag set that reports errors instead of exiting, so run can print one line.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("backend "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and turns flag errors and stray arguments into usage errors; --help prints
// the flag list to stderr.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
