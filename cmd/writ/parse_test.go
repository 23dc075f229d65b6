package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func TestParseResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, typ, id, err string
	}{
		{in: "Deployment::api-prod", typ: "Deployment", id: "api-prod"},
		{in: "Writ::Deployment::api-prod", typ: "Writ::Deployment", id: "api-prod"},
		{in: `Deployment::"api-prod"`, typ: "Deployment", id: "api-prod"},
		{in: `Bucket::"a::b c"`, typ: "Bucket", id: "a::b c"},
		{in: `Bucket::"quote\"d"`, typ: "Bucket", id: `quote"d`},
		{in: "S3_Bucket::backups/2026", typ: "S3_Bucket", id: "backups/2026"},
		{in: "Repo::github.com/acme/api", typ: "Repo", id: "github.com/acme/api"},
		{in: "api-prod", err: `no "::"`},
		{in: "", err: `no "::"`},
		{in: "::x", err: "empty type"},
		{in: "Deployment::", err: "empty id"},
		{in: `Deployment::""`, err: "empty id"},
		{in: "1Deploy::x", err: `type segment "1Deploy" is not an identifier`},
		{in: "Ns::::x", err: `type segment "" is not an identifier`},
		{in: "De-ploy::x", err: "is not an identifier"},
		{in: `Deployment::"x`, err: "unbalanced quote"},
		{in: `Deployment::x"`, err: "unbalanced quote"},
		{in: `Deployment::"a\"`, err: "not a valid string literal"},
		{in: `Deployment::"a\\"`, typ: "Deployment", id: `a\`},
		{in: `Deployment"`, err: "unbalanced quote"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			typ, id, err := parseResource(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "want TYPE::ID") {
					t.Errorf("error %q does not show the expected form", err)
				}
				return
			}
			if err != nil || typ != tc.typ || id != tc.id {
				t.Fatalf("= %q, %q, %v; want %q, %q", typ, id, err, tc.typ, tc.id)
			}
			// What resourceRef prints parses back to the same pair.
			typ2, id2, err := parseResource(resourceRef(typ, id))
			if err != nil || typ2 != typ || id2 != id {
				t.Errorf("round trip via %q = %q, %q, %v", resourceRef(typ, id), typ2, id2, err)
			}
		})
	}
}

func TestParseKVs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want map[string]string
		err  string
	}{
		{name: "none", in: nil, want: nil},
		{name: "pairs", in: []string{"a=1", "b=x=y", "c="}, want: map[string]string{"a": "1", "b": "x=y", "c": ""}},
		{name: "no equals", in: []string{"a"}, err: `"a": want key=value`},
		{name: "empty key", in: []string{"=v"}, err: "empty key"},
		{name: "space in key", in: []string{"a b=v"}, err: "white space"},
		{name: "duplicate", in: []string{"a=1", "a=2"}, err: `key "a" given twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseKVs(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestParseAttrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want map[string]any
		err  string
	}{
		{name: "strings", in: []string{"team=api", "note=a=b"}, want: map[string]any{"team": "api", "note": "a=b"}},
		{name: "typed", in: []string{"n:=3", "on:=true", "tags:=[\"a\",\"b\"]", "o:={\"k\":1}", "s:=\"x\""},
			want: map[string]any{"n": 3.0, "on": true, "tags": []any{"a", "b"}, "o": map[string]any{"k": 1.0}, "s": "x"}},
		{name: "string that looks typed", in: []string{"n=3"}, want: map[string]any{"n": "3"}},
		{name: "bad json", in: []string{"n:=tru"}, err: `"n:=tru": value is not JSON`},
		{name: "trailing json", in: []string{"n:=1 2"}, err: "unexpected data after the JSON value"},
		{name: "no equals", in: []string{"n"}, err: "want key=value or key:=JSON"},
		{name: "empty key", in: []string{":=1"}, err: "empty key"},
		{name: "duplicate", in: []string{"a=1", "a:=1"}, err: `key "a" given twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseAttrs(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.AsMap()); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestParseContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "ctx.json")
	if err := os.WriteFile(file, []byte("{\n  \"ticket\": \"CHG-1\",\n  \"pipeline\": {\"run\": 7}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{\n  \"ticket\": \"CHG-1\",\n  oops\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, arg, stdin string
		want             map[string]any
		err              string
	}{
		{name: "none", arg: ""},
		{name: "inline", arg: `{"ticket":"CHG-1234","dry_run":false,"n":1}`, want: map[string]any{"ticket": "CHG-1234", "dry_run": false, "n": 1.0}},
		{name: "empty object", arg: `{}`, want: map[string]any{}},
		{name: "file", arg: "@" + file, want: map[string]any{"ticket": "CHG-1", "pipeline": map[string]any{"run": 7.0}}},
		{name: "stdin", arg: "@-", stdin: `{"a":"b"}`, want: map[string]any{"a": "b"}},
		{name: "array", arg: `[1,2]`, err: "want a JSON object like {\"ticket\":\"CHG-1234\"}, got an array"},
		{name: "string", arg: `"x"`, err: "got a string"},
		{name: "null", arg: `null`, err: "got null"},
		{name: "not json", arg: `ticket=CHG-1`, err: "context: not valid JSON: line 1, column 2"},
		{name: "bad file position", arg: "@" + bad, err: "context from " + bad + ": not valid JSON: line 3, column 3"},
		{name: "trailing", arg: `{} {}`, err: "unexpected data after the JSON value"},
		{name: "empty stdin", arg: "@-", stdin: "", err: "empty input"},
		{name: "missing file", arg: "@" + filepath.Join(dir, "nope"), err: "no such file"},
		{name: "empty name", arg: "@", err: "empty file name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseContext(tc.arg, strings.NewReader(tc.stdin))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			}
			want, _ := structpb.NewStruct(tc.want)
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestReadInputLimit(t *testing.T) {
	t.Parallel()
	big := strings.NewReader(strings.Repeat("x", maxInputBytes+1))
	if _, err := readInput("-", big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "15m", want: 900},
		{in: "1h30m", want: 5400},
		{in: "90s", want: 90},
		{in: "900", want: 900},
		{in: "0", want: 0},
		{in: " 10s ", want: 10},
		{in: "1500ms", err: "not a whole number of seconds"},
		{in: "-5m", err: "negative"},
		{in: "-1", err: "negative"},
		{in: "10 minutes", err: "want e.g. 90s, 15m, 1h30m or a number of seconds"},
		{in: "", err: "empty duration"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseSeconds(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseConsistency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want writv1.Consistency
		err  bool
	}{
		{in: "", want: writv1.Consistency_CONSISTENCY_UNSPECIFIED},
		{in: "stale", want: writv1.Consistency_CONSISTENCY_STALE},
		{in: "Linearizable", want: writv1.Consistency_CONSISTENCY_LINEARIZABLE},
		{in: "strong", err: true},
	}
	for _, tc := range tests {
		got, err := parseConsistency(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseConsistency(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3", want: "10.1.2.3/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "::1", want: "::1/128"},
		{in: "10.0.0.1/8", err: "did you mean 10.0.0.0/8?"},
		{in: "10.0.0.0/33", err: "want an address or prefix"},
		{in: "example.com", err: "want an address or prefix"},
	}
	for _, tc := range tests {
		got, err := parseCIDR(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseCIDR(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseCIDR(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReadSecretArg(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name, val, stdin, want, err string
		env                         map[string]string
	}{
		{name: "value", val: "abc", want: "abc"},
		{name: "trimmed", val: " abc\n", want: "abc"},
		{name: "env", env: map[string]string{"X": "from-env"}, want: "from-env"},
		{name: "value beats env", val: "v", env: map[string]string{"X": "from-env"}, want: "v"},
		{name: "stdin", val: "-", stdin: "piped\n", want: "piped"},
		{name: "env says stdin", env: map[string]string{"X": "-"}, stdin: "piped", want: "piped"},
		{name: "missing", err: "credential is required (argument, flag, or X)"},
		{name: "empty stdin", val: "-", stdin: "\n", err: "credential is empty"},
		{name: "two values", val: "-", stdin: "a\nb\n", err: "contains white space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readSecretArg("credential", tc.val, strings.NewReader(tc.stdin), env(tc.env), "X")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzParseResource(f *testing.F) {
	for _, s := range []string{"Deployment::api-prod", `Ns::T::"a::b"`, `T::"\u00e9"`, "::", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, id, err := parseResource(s)
		if err != nil {
			return
		}
		typ2, id2, err := parseResource(resourceRef(typ, id))
		if err != nil || typ2 != typ || id2 != id {
			t.Fatalf("%q -> (%q, %q) -> %q -> (%q, %q, %v)", s, typ, id, resourceRef(typ, id), typ2, id2, err)
		}
	})
}

func FuzzParseContext(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[]`, `{"a":{"b":[null,true]}}`, `{`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "@") {
			return // file names are not the decoder under test
		}
		st, err := parseContext(s, nil)
		if err == nil && s != "" && st == nil {
			t.Fatalf("%q: no error and no struct", s)
		}
	})
}
