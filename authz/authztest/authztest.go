// Package authztest runs data-driven decision cases (testdata/*.yaml) against
// authz under every evaluator variant. The case format and its parser live in
// authz/policytest (which `writ policy test` uses too); this package adds the
// testing harness: variants, parallel subtests and a coverage report.
package authztest

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/authz/policytest"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// The case format, from authz/policytest.
type (
	File     = policytest.File
	Identity = policytest.Identity
	Resource = policytest.Resource
	Expect   = policytest.Expect
	Case     = policytest.Case
)

// Load reads every file matching pattern (e.g. "testdata/*.yaml"); unknown
// fields are errors so a typo cannot silently drop an expectation.
func Load(tb testing.TB, pattern string) []File {
	tb.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Fatalf("no case files match %s", pattern)
	}
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		f, err := policytest.ParseFile(p, b)
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// Report tallies, per named policy set, what the cases exercised.
type Report struct {
	mu    sync.Mutex
	BySet map[string]*SetReport
}

// SetReport is what the cases exercised of one named set.
type SetReport struct {
	Allows, Denies int
	// Determining counts how often each policy id determined a decision.
	Determining map[string]int
}

func (r *Report) record(set string, d authz.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.BySet[set]
	if s == nil {
		s = &SetReport{Determining: map[string]int{}}
		r.BySet[set] = s
	}
	if d.Allowed {
		s.Allows++
	} else {
		s.Denies++
	}
	for _, p := range d.Determining {
		s.Determining[p.ID]++
	}
}

// Variant decides one request against one policy set: an evaluator, or a
// transport in front of one.
type Variant func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error)

// Variants returns the evaluator variants authz offers: a fresh Compile per
// request (indexed Decide), the same evaluating the whole set (DecideAll),
// and a shared Engine (which also exercises the cache under concurrency).
func Variants() map[string]Variant {
	engine := authz.NewEngine()
	return map[string]Variant{
		"compile": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := authz.Compile(name, 1, text)
			if err != nil {
				t.Fatalf("compile %s: %v", name, err)
			}
			return ps.Decide(req)
		},
		"whole-set": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := authz.Compile(name, 1, text)
			if err != nil {
				t.Fatalf("compile %s: %v", name, err)
			}
			return ps.DecideAll(req)
		},
		"engine": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := engine.Get(&fsmpb.PolicySet{Name: name, Version: 1, Cedar: string(text)})
			if err != nil {
				t.Fatalf("engine %s: %v", name, err)
			}
			return ps.Decide(req)
		},
	}
}

// Run runs every case of files, in parallel, under every variant, and
// returns once all are done with a report of what they exercised.
func Run(t *testing.T, files []File, sets map[string][]byte, variants map[string]Variant) *Report {
	t.Helper()
	report := &Report{BySet: map[string]*SetReport{}}
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	slices.Sort(names)
	// The group returns only when every parallel subtest has finished.
	t.Run("cases", func(t *testing.T) {
		for _, f := range files {
			t.Run(filepath.Base(f.Path), func(t *testing.T) {
				t.Parallel()
				seen := map[string]bool{}
				for _, c := range f.Cases {
					if c.Name == "" || seen[c.Name] {
						t.Errorf("case names must be unique and non-empty: %q", c.Name)
						continue
					}
					seen[c.Name] = true
					t.Run(c.Name, func(t *testing.T) {
						t.Parallel()
						setName, text, inline, err := f.ResolveSet(&c, sets)
						if err != nil {
							t.Fatal(err)
						}
						for _, vn := range names {
							// A fresh request per variant: nothing may leak between them.
							req, err := f.Request(&c)
							if err != nil {
								t.Fatal(err)
							}
							dec, err := variants[vn](t, setName, text, req)
							if msg := policytest.Check(c.Expect, dec, err); msg != "" {
								t.Errorf("%s: %s", vn, msg)
							}
							if err == nil && vn == names[0] && !inline {
								report.record(setName, dec)
							}
						}
					})
				}
			})
		}
	})
	return report
}
