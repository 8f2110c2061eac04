package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// importRules are the module's layers (docs/architecture.md): each package may import only the
// project packages listed. The kernel library (shaders), the networks and samplers (model) and the
// ASBM math (backend/asbm) never import an engine or the CLI; the engines never import each other
// or the CLI; the browser client (wasm) imports nothing under backend/.
var importRules = map[string][]string{
	"asbm/weights":      {},
	"asbm/model":        {"asbm/weights"},
	"asbm/shaders":      {"asbm/weights", "asbm/model"},
	"asbm/wasm":         {"asbm/weights", "asbm/model", "asbm/shaders"},
	"asbm/backend/asbm": {"asbm/model"},
	"asbm/backend/cpu":  {"asbm/weights", "asbm/model", "asbm/backend/asbm", "asbm/backend/cpu/kern"},
	"asbm/backend/gpu":  {"asbm/weights", "asbm/model", "asbm/shaders", "asbm/backend/asbm"},
}

// TestImportsFlowOneWay checks importRules with `go list` (the wasm client as GOOS=js builds it).
func TestImportsFlowOneWay(t *testing.T) {
	list := func(env []string, pkgs ...string) map[string][]string {
		cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, pkgs...)...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		m := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			m[f[0]] = f[1:]
		}
		return m
	}
	got := list(nil, "./...")
	for p, imps := range list([]string{"GOOS=js", "GOARCH=wasm"}, "./wasm", "./shaders", "./model") {
		got[p] = append(got[p], imps...)
	}
	for pkg, allowed := range importRules {
		imps, ok := got[pkg]
		if !ok {
			t.Errorf("go list does not show %s", pkg)
		}
		for _, imp := range imps {
			if strings.HasPrefix(imp, "asbm/") && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s; it may import only %v", pkg, imp, allowed)
			}
		}
	}
	// Nothing below the CLI imports a verb's package.
	verbs := []string{"asbm/backend/cli", "asbm/backend/train", "asbm/backend/eval", "asbm/backend/sample",
		"asbm/backend/plot", "asbm/backend/bench", "asbm/backend/modelfile", "asbm/backend/torchimport"}
	for pkg, imps := range got {
		if strings.HasPrefix(pkg, "asbm/backend/") && !slices.Contains(verbs, pkg) && pkg != "asbm/backend/internal/clitest" {
			for _, imp := range imps {
				if slices.Contains(verbs, imp) {
					t.Errorf("%s imports the CLI package %s", pkg, imp)
				}
			}
		}
	}
}
