package authz_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/writ-dev/writ/authz"
)

var corpusEvery = flag.Int("corpus.every", 0, "run every Nth corpus test file (0: all; 16 under -short)")

// TestCedarCorpus runs the Cedar integration-test corpus that ships inside
// the cedar-go module (corpus-tests.tar.gz, generated from Rust Cedar)
// through Writ's plain evaluation path, authz.EvalCedarJSON: the same
// schema parsing, schema-guided entity decoding, request decoding and
// indexed evaluation the EvaluateCedar RPC uses. Every request's decision,
// determining policies and erroring policies must be the corpus's; the
// whole-set path is checked too. Under -short only every 16th file runs.
// Under -race it is skipped: nothing in it is concurrent, so the race
// detector checks nothing here and only multiplies its minutes (decompressing
// the archive alone takes 20 s under -race on a busy 2-core machine).
// `make test-corpus` runs all of it without -race, and CI runs that.
func TestCedarCorpus(t *testing.T) {
	t.Parallel()
	if raceBuild {
		t.Skip("single-threaded: run without -race (make test-corpus)")
	}
	files := loadCorpus(t)
	every := *corpusEvery
	if every == 0 && testing.Short() {
		every = 16
	}
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ".json") && !strings.HasSuffix(name, ".entities.json") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) < 1000 {
		t.Fatalf("corpus has %d tests; expected thousands", len(names))
	}
	var ran, requests int
	for i, name := range names {
		if every > 1 && i%every != 0 {
			continue
		}
		ran++
		var tc struct {
			Schema, Policies, Entities string
			Requests                   []json.RawMessage
		}
		if err := json.Unmarshal(files[name], &tc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		schema, err := authz.ParseSchema("test.cedarschema", files[tc.Schema])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		set, err := authz.CompileCedar("policy.cedar", files[tc.Policies])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, raw := range tc.Requests {
			requests++
			var r struct {
				Description string
				Principal   json.RawMessage
				Action      json.RawMessage
				Resource    json.RawMessage
				Context     json.RawMessage
				Decision    string
				Reason      []string
				Errors      []string
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			reqJSON, err := json.Marshal(map[string]json.RawMessage{
				"principal": r.Principal, "action": r.Action, "resource": r.Resource, "context": r.Context,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, whole := range []bool{false, true} {
				ans, err := authz.EvalCedarJSON(authz.CedarInput{
					Set: set, Entities: files[tc.Entities], Request: reqJSON, Schema: schema, WholeSet: whole,
				})
				if err != nil {
					t.Errorf("%s %q: %v", name, r.Description, err)
					continue
				}
				var reasons, errs []string
				for _, p := range ans.Reasons {
					reasons = append(reasons, p.ID)
				}
				for _, e := range ans.Errors {
					errs = append(errs, e.PolicyID)
				}
				want := r.Decision == "allow"
				if ans.Allowed != want || !slices.Equal(reasons, r.Reason) || !slices.Equal(errs, r.Errors) {
					t.Errorf("%s %q (whole set %v): got allowed=%v reasons=%q errors=%q, corpus says %s reasons=%q errors=%q",
						name, r.Description, whole, ans.Allowed, reasons, errs, r.Decision, r.Reason, r.Errors)
				}
			}
		}
	}
	t.Logf("%d corpus tests, %d requests, each indexed and whole-set", ran, requests)
}

// loadCorpus reads corpus-tests.tar.gz from the cedar-go module go.mod pins.
func loadCorpus(t *testing.T) map[string][]byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cedar-policy/cedar-go").Output()
	if err != nil {
		t.Fatalf("locate cedar-go: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "corpus-tests.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b.Bytes()
	}
	return files
}
