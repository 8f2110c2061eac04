// Package cli holds what every `backend` verb shares: usage errors (exit status 2), flag sets that
// report errors instead of exiting, and small helpers for flags and deterministic output.
package cli

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// UsageError marks errors caused by bad flags or arguments; `backend` exits with status 2 on them.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, a ...any) error { return UsageError{fmt.Sprintf(format, a...)} }

// NewFlags returns a flag set for `backend name` that reports errors instead of exiting, so the
// caller can print one line.
func NewFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("backend "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// ParseFlags parses args and turns flag errors and stray arguments into usage errors; --help prints
// the flag list to stderr and returns flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return UsageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// FlagValue returns the value of the flag name in args (-name v, --name v, -name=v, --name=v), or "".
func FlagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		s := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if s == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(s, name+"="); ok {
			return v
		}
	}
	return ""
}

// SortedKeys returns a map's keys in order, for deterministic files and messages.
func SortedKeys[V any, K cmp.Ordered](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Verb is one sub-command of `backend`: a one-line summary and the function that runs it on its
// arguments, writing results to stdout (progress goes to stderr).
type Verb struct {
	Summary string
	Run     func(args []string, stdout io.Writer) error
}

// Main runs the verb args[0] with the rest of args and returns the exit status: 0, 1 for a
// failure, 2 for a usage error. A failure is one line on stderr, "backend VERB: message".
func Main(verbs map[string]Verb, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(verbs, stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "backend: unknown command %q (want one of %s; see backend --help)\n", args[0], strings.Join(SortedKeys(verbs), ", "))
		return 2
	}
	err := v.Run(args[1:], stdout)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "backend %s: %v\n", args[0], err)
	var ue UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func printUsage(verbs map[string]Verb, w io.Writer) {
	fmt.Fprintln(w, "usage: backend <command> [flags]\n\ncommands:")
	for _, n := range SortedKeys(verbs) {
		fmt.Fprintf(w, "  %-7s %s\n", n, verbs[n].Summary)
	}
	fmt.Fprintln(w, "\nbackend <command> --help lists a command's flags.")
}
