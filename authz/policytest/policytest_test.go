package policytest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile: any YAML either parses into a case file or errors; a
// parsed file's cases build requests or error. Never a panic.
func FuzzParseFile(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "policies", "testdata", "*.yaml"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("cases:\n  - name: x\n    identity: {id: a, kind: workload}\n    action: a\n    resource: {type: T, id: i}\n    cedar: 'permit (principal, action, resource);'\n    expect: {allowed: true}\n"))
	f.Add([]byte("cases: [{name: a}, {name: a}]"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = IsCaseFile(b)
		file, err := ParseFile("fuzz.yaml", b)
		if err != nil {
			return
		}
		for i := range file.Cases {
			_, _ = file.Request(&file.Cases[i])
			_, _, _, _ = file.ResolveSet(&file.Cases[i], nil)
		}
	})
}

// TestLoadDirAndRun covers the runner on the example library: every set
// validates (no schema here: compile only), every case passes, and the
// fixtures file is skipped.
func TestLoadDirAndRun(t *testing.T) {
	t.Parallel()
	d, err := LoadDir(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.SetsOrder) != 3 || len(d.Files) != 3 || len(d.Skipped) != 1 {
		t.Fatalf("sets %v, %d case files, skipped %v", d.SetsOrder, len(d.Files), d.Skipped)
	}
	sum := Run(d, nil)
	if !sum.OK() || sum.Failed != 0 {
		t.Fatalf("summary %+v", sum)
	}
}
