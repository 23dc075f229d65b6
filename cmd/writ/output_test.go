package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func TestParseOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		kind string
		path []string
		err  string
	}{
		{in: "", kind: "text"},
		{in: "text", kind: "text"},
		{in: "json", kind: "json"},
		{in: "field=lease.id", kind: "field", path: []string{"lease", "id"}},
		{in: "field=", err: "want field=PATH"},
		{in: "field=.id", err: "want field=PATH"},
		{in: "field=a..b", err: "want field=PATH"},
		{in: "yaml", err: "want text, json or field=PATH"},
	}
	for _, tc := range tests {
		got, err := parseOutput(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseOutput(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.kind != tc.kind || strings.Join(got.path, ".") != strings.Join(tc.path, ".") {
			t.Errorf("parseOutput(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestFieldValue(t *testing.T) {
	t.Parallel()
	msg := &writv1.AuthorizeAndIssueResponse{
		Decision: &writv1.Decision{
			Allowed:             true,
			DeterminingPolicies: []*writv1.DeterminingPolicy{{Id: "policy0", Annotations: map[string]string{"id": "deploy", "b": "2"}}},
			PolicyVersion:       3,
		},
		Lease: &writv1.Lease{
			Id: "l_abc", ExpiresAt: timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
			Scope: &writv1.Scope{Actions: []string{"deploy", "rollback"}, Resources: []*writv1.Resource{{Type: "Deployment", Id: "api-prod"}}},
		},
		Credential: "eyJ",
		Index:      21,
	}
	tests := []struct{ path, want, err string }{
		{path: "credential", want: "eyJ"},
		{path: "lease.id", want: "l_abc"},
		{path: "index", want: "21"},
		{path: "decision.allowed", want: "true"},
		{path: "decision.policyVersion", want: "3"},
		{path: "decision.policy_version", want: "3"},
		{path: "lease.expiresAt", want: "2030-01-02T03:04:05Z"},
		{path: "lease.issuedAt", want: ""},
		{path: "lease.scope.actions", want: "deploy\nrollback"},
		{path: "lease.scope.actions.1", want: "rollback"},
		{path: "lease.scope.resources.0.id", want: "api-prod"},
		{path: "lease.scope.resources.0", want: `{"type":"Deployment","id":"api-prod"}`},
		{path: "decision.determiningPolicies.0.annotations", want: "b=2\nid=deploy"},
		{path: "decision.determiningPolicies.0.annotations.id", want: "deploy"},
		{path: "lease.nope", err: `no field "nope" in writ.v1.Lease`},
		{path: "lease.scope.actions.2", err: `no element "2" (the list has 2)`},
		{path: "lease.scope.actions.x", err: `no element "x"`},
		{path: "decision.determiningPolicies.0.annotations.zz", err: `no key "zz"`},
		{path: "credential.x", err: "credential is not a message"},
	}
	for _, tc := range tests {
		got, err := fieldValue(msg.ProtoReflect(), strings.Split(tc.path, "."))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(tc.want, " ", "") {
			t.Errorf("%s = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

func TestTextTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	to := &textOut{now: func() time.Time { return now }}
	tests := []struct {
		ts   *timestamppb.Timestamp
		want string
	}{
		{ts: nil, want: "-"},
		{ts: &timestamppb.Timestamp{}, want: "-"},
		{ts: timestamppb.New(now.Add(90 * time.Second)), want: "2030-01-02T03:05:35Z (in 1m30s)"},
		{ts: timestamppb.New(now.Add(-time.Hour)), want: "2030-01-02T02:04:05Z (1h0m0s ago)"},
		{ts: timestamppb.New(now.Add(400 * time.Millisecond)), want: "2030-01-02T03:04:05Z (now)"},
	}
	for _, tc := range tests {
		if got := to.time(tc.ts); got != tc.want {
			t.Errorf("time(%v) = %q, want %q", tc.ts, got, tc.want)
		}
	}
}

func TestJSONOutputStable(t *testing.T) {
	t.Parallel()
	msg := &writv1.AuthorizeResponse{Decision: &writv1.Decision{Allowed: false}, LeaseId: "l_1"}
	var first string
	for i := range 20 {
		var b bytes.Buffer
		p := &printer{w: &b, format: outputFormat{kind: "json"}}
		if err := p.emit(msg, nil); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b.String()
			if !strings.Contains(first, "\n  \"leaseId\": \"l_1\",\n") || !strings.Contains(first, `"allowed": false`) {
				t.Fatalf("unexpected JSON:\n%s", first)
			}
		} else if b.String() != first {
			t.Fatalf("JSON output changed between runs:\n%s\n%s", first, b.String())
		}
	}
}
