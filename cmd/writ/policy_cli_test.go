package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyPolicies copies the example library (sets and cases) into a temp dir
// the test may change.
func copyPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"sets", "testdata"} {
		src := filepath.Join("..", "..", "policies", sub)
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, sub, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func editFile(t *testing.T, path, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, repl, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyTest: the example library passes (as CI runs it); a wrong
// expectation, a wrong determining policy and a set the schema rejects
// each make it exit 1 and say why; an empty directory is a failure too.
func TestPolicyTest(t *testing.T) {
	t.Parallel()
	if r := runCLI(t, nil, "", "policy", "test", filepath.Join("..", "..", "policies")); r.code != exitOK || !strings.Contains(r.stdout, " 0 failed") {
		t.Fatalf("examples: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		name, file, old, repl, want string
	}{
		{"wrong decision", "testdata/prod.yaml", "allowed: true", "allowed: false", "allowed = true, want false"},
		{"wrong determining policy", "testdata/prod.yaml", "determining: [prod-ci-deploy-with-ticket]", "determining: [prod-break-glass]", "determining ="},
		{"set fails the schema", "sets/prod.cedar", "resource.owner == principal.owner &&", "resource.colour == principal.owner &&", "INVALID prod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyPolicies(t)
			editFile(t, filepath.Join(dir, tc.file), tc.old, tc.repl)
			r := runCLI(t, nil, "", "policy", "test", dir)
			if r.code != exitError || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("code %d, want %d with %q:\n%s%s", r.code, exitError, tc.want, r.stdout, r.stderr)
			}
		})
	}
	if r := runCLI(t, nil, "", "policy", "test", t.TempDir()); r.code != exitError {
		t.Fatalf("empty dir: code %d", r.code)
	}
	if r := runCLI(t, nil, "", "policy", "test", filepath.Join(t.TempDir(), "missing")); r.code != exitUsage {
		t.Fatalf("missing dir: code %d", r.code)
	}
	// -o json reports every case.
	r := runCLI(t, nil, "", "policy", "test", filepath.Join("..", "..", "policies"), "-o", "json")
	var rep testReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Failed != 0 || rep.Passed == 0 || len(rep.Cases) != rep.Passed {
		t.Fatalf("json: %v %+v", err, rep)
	}
}

// TestPolicyDiffCases: dropping the ticket requirement from prod widens
// the case that deploys without one; --fail-on-widen exits 3.
func TestPolicyDiffCases(t *testing.T) {
	t.Parallel()
	dir := copyPolicies(t)
	cand := filepath.Join(dir, "candidate.cedar")
	b, err := os.ReadFile(filepath.Join(dir, "sets", "prod.cedar"))
	if err != nil {
		t.Fatal(err)
	}
	loose := strings.Replace(string(b), `context has ticket && context.ticket like "CHG-*" &&`, "", 1)
	if loose == string(b) {
		t.Fatal("prod.cedar changed: update the test")
	}
	if err := os.WriteFile(cand, []byte(loose), 0o644); err != nil {
		t.Fatal(err)
	}
	casesDir := filepath.Join(dir, "testdata")
	// The cases reference sets by name: give the directory the sets too.
	if err := os.Rename(filepath.Join(dir, "sets"), filepath.Join(casesDir, "sets")); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "", "policy", "diff", "prod", "--file", cand, "--cases", casesDir, "-o", "json")
	var rep diffReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != exitOK {
		t.Fatalf("code %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if rep.Widened == 0 || rep.Narrowed != 0 || rep.Compared == 0 || rep.Changes[0].Kind != "widened" {
		t.Fatalf("report %+v", rep)
	}
	if r := runCLI(t, nil, "", "policy", "diff", "prod", "--file", cand, "--cases", casesDir, "--fail-on-widen"); r.code != exitNegative || !strings.Contains(r.stdout, "WIDENED") {
		t.Fatalf("--fail-on-widen: code %d\n%s", r.code, r.stdout)
	}
	// The unchanged set changes nothing.
	r = runCLI(t, nil, "", "policy", "diff", "prod", "--file", filepath.Join(casesDir, "sets", "prod.cedar"), "--cases", casesDir, "--fail-on-widen")
	if r.code != exitOK || !strings.Contains(r.stdout, "0 widened, 0 narrowed, 0 other") {
		t.Fatalf("same set: code %d\n%s", r.code, r.stdout)
	}
}

// TestPolicyEvalLocal answers a Cedar request from Cedar's own inputs.
func TestPolicyEvalLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pol := write("p.cedar", `@id("admins")
@reason("admins may do anything")
permit (principal in Group::"admins", action, resource);
forbid (principal, action == Action::"delete", resource) when { resource.locked };
`)
	ents := write("e.json", `[
 {"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": [{"type": "Group", "id": "admins"}]},
 {"uid": {"type": "Doc", "id": "d"}, "attrs": {"locked": true}, "parents": []}
]`)
	read := write("read.json", `{"principal": "User::\"alice\"", "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d"}, "context": {}}`)
	del := write("delete.json", `{"principal": {"type": "User", "id": "alice"}, "action": {"type": "Action", "id": "delete"}, "resource": {"type": "Doc", "id": "d"}}`)

	r := runCLI(t, nil, "", "policy", "eval", "--local", "--file", pol, "--entities", ents, "--request", read, "-o", "json")
	if r.code != exitOK {
		t.Fatalf("read: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Decision string
		Reasons  []struct {
			ID          string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Decision != "allow" || len(out.Reasons) != 1 || out.Reasons[0].ID != "policy0" || out.Reasons[0].Annotations["id"] != "admins" {
		t.Fatalf("read: %s", r.stdout)
	}
	r = runCLI(t, nil, "", "policy", "eval", "--local", "--file", pol, "--entities", ents, "--request", del)
	if r.code != exitNegative || !strings.Contains(r.stdout, "forbidden") || !strings.Contains(r.stdout, "policy1") {
		t.Fatalf("delete: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, nil, "", "policy", "eval", "--local", "--file", pol, "--request", write("bad.json", `{"principal": 1}`)); r.code != exitUsage {
		t.Fatalf("bad request: code %d %s", r.code, r.stderr)
	}
}
