package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestMain lets the test binary act as the writ CLI when invoked through a
// link named "writ", so the dev banner's shell walkthrough can be run as is.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "writ" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

func TestNewAdminToken(t *testing.T) {
	t.Parallel()
	tok, err := newAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(tok, "writ_admin_")
	if !ok {
		t.Fatalf("token %q lacks the prefix", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) != 32 {
		t.Fatalf("token body %q: %d bytes, %v", raw, len(b), err)
	}
	tok2, _ := newAdminToken(nil)
	if tok2 == tok {
		t.Error("two tokens are equal")
	}
	fixed, err := newAdminToken(bytes.NewReader(make([]byte, 32)))
	if err != nil || fixed != "writ_admin_"+strings.Repeat("A", 43) {
		t.Errorf("zero token = %q, %v", fixed, err)
	}
	if _, err := newAdminToken(bytes.NewReader(make([]byte, 3))); err == nil {
		t.Error("short randomness accepted")
	}
}

func TestNextPort(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: "127.0.0.1:7400", want: "127.0.0.1:7401"},
		{in: "[::1]:7400", want: "[::1]:7401"},
		{in: ":7400", want: ":7401"},
		{in: "127.0.0.1:0", want: "127.0.0.1:0"},
		{in: "127.0.0.1:65535", err: "no port after"},
		{in: "127.0.0.1", err: "want host:port"},
		{in: "127.0.0.1:x", err: "bad port"},
	}
	for _, tc := range tests {
		got, err := nextPort(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("nextPort(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("nextPort(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"abc":                   "abc",
		"http://127.0.0.1:7400": "http://127.0.0.1:7400",
		"Deployment::api-prod":  "Deployment::api-prod",
		"":                      "''",
		`{"ticket":"CHG-1234"}`: `'{"ticket":"CHG-1234"}'`,
		"it's":                  `'it'\''s'`,
		"a b":                   "'a b'",
		"$HOME":                 "'$HOME'",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPickDemoRole(t *testing.T) {
	t.Parallel()
	ids := []*writv1.Identity{
		{Id: "ci/deploy-api", Kind: "ci_job", Environment: "prod"},
		{Id: "ci/build", Kind: "ci_job", Environment: "prod"},
		{Id: "agent/bot", Kind: "agent", Environment: "prod"},
		{Id: "svc/x", Kind: "workload", Environment: "staging"},
	}
	tests := []struct {
		name  string
		roles []*writv1.Role
		want  string
	}{
		{name: "the example deploy identity wins", want: "deploy", roles: []*writv1.Role{
			{Name: "bot", Environment: "prod", Identity: "agent/bot"},
			{Name: "build", Environment: "prod", Identity: "ci/build"},
			{Name: "deploy", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"}},
		}},
		{name: "else a prod ci job", want: "build", roles: []*writv1.Role{
			{Name: "bot", Environment: "prod", Identity: "agent/bot"},
			{Name: "build", Environment: "prod", Identity: "ci/build"},
		}},
		{name: "approle only", want: "bot", roles: []*writv1.Role{
			{Name: "deploy", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"jwt"}},
			{Name: "bot", Environment: "prod", Identity: "agent/bot", AuthMethods: []string{"jwt", "approle"}},
		}},
		{name: "any env last", want: "x", roles: []*writv1.Role{{Name: "x", Environment: "staging", Identity: "svc/x"}}},
		{name: "none", want: "", roles: []*writv1.Role{{Name: "x", AuthMethods: []string{"mtls"}}}},
	}
	for _, tc := range tests {
		got := pickDemoRole(tc.roles, ids)
		if got.GetName() != tc.want {
			t.Errorf("%s: picked %q, want %q", tc.name, got.GetName(), tc.want)
		}
	}
}

func testDevData() devData {
	return devData{
		PolicySets: []*writv1.PolicySet{{Name: "prod", Cedar: "permit(principal, action, resource);"}, {Name: "dev", Cedar: "permit(principal, action, resource);"}},
		Identities: []*writv1.Identity{
			{Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod", Status: "active"},
			{Id: "agent/support-bot", Kind: "agent", Owner: "team-support", Environment: "prod", Status: "active"},
		},
		Roles: []*writv1.Role{
			{Name: "support-bot", Environment: "prod", Identity: "agent/support-bot", AuthMethods: []string{"approle"}},
			{Name: "deploy-api-ci", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"}, DefaultTtlSeconds: 900, MaxTtlSeconds: 3600},
		},
	}
}

func TestSeedDev(t *testing.T) {
	t.Parallel()
	f := &fakeServer{onCall: func(method string, req proto.Message) (proto.Message, error) {
		switch method {
		case "PutRole":
			r := proto.Clone(req.(*writv1.PutRoleRequest).GetRole()).(*writv1.Role)
			r.RoleId = "rid-" + r.GetName()
			return &writv1.PutRoleResponse{Role: r, Index: 3}, nil
		case "CreateSecretID":
			return &writv1.CreateSecretIDResponse{SecretId: "sid-1", Accessor: "acc-1"}, nil
		}
		return nil, nil
	}}
	url := startFake(t, f)
	c := newClients(clientConfig{BaseURL: url, Token: "adm", Protocol: protoConnect})
	res, err := seedDev(context.Background(), c, testDevData())
	if err != nil {
		t.Fatal(err)
	}
	if res.PolicySets != 2 || res.Identities != 2 || res.Roles != 2 {
		t.Errorf("counts %+v", res)
	}
	if res.DemoRole.GetName() != "deploy-api-ci" || res.DemoRole.GetRoleId() != "rid-deploy-api-ci" || res.SecretID != "sid-1" || res.Accessor != "acc-1" {
		t.Errorf("demo %+v", res)
	}
	var methods []string
	for _, call := range f.calls {
		methods = append(methods, call.method)
		if call.header.Get("Authorization") != "Bearer adm" {
			t.Errorf("%s without the admin token", call.method)
		}
	}
	want := []string{"PutPolicySet", "PutPolicySet", "PutIdentity", "PutIdentity", "PutRole", "PutRole", "CreateSecretID"}
	if diff := cmp.Diff(want, methods); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&writv1.CreateSecretIDRequest{Role: "deploy-api-ci", Metadata: map[string]string{"created_by": "writ dev"}}, f.last(t).req, protocmp.Transform()); diff != "" {
		t.Error(diff)
	}
}

func TestSeedDevFailure(t *testing.T) {
	t.Parallel()
	f := &fakeServer{errs: map[string]error{"PutPolicySet": connect.NewError(connect.CodeInvalidArgument, errors.New("parse error"))}}
	url := startFake(t, f)
	c := newClients(clientConfig{BaseURL: url, Protocol: protoConnect})
	_, err := seedDev(context.Background(), c, testDevData())
	if err == nil || !strings.Contains(err.Error(), "policy set prod: invalid_argument: parse error") {
		t.Fatalf("err = %v", err)
	}
}

func TestRenderBannerWithoutDemoRole(t *testing.T) {
	t.Parallel()
	b := renderBanner(bannerData{APIURL: "http://127.0.0.1:7400", AdminToken: "writ_admin_x", Seed: &seedResult{PolicySets: 1}})
	for _, s := range []string{"export WRIT_ADDR=http://127.0.0.1:7400", "export WRIT_TOKEN=writ_admin_x", "writ status"} {
		if !strings.Contains(b, s) {
			t.Errorf("banner lacks %q:\n%s", s, b)
		}
	}
	if strings.Contains(b, "writ issue") {
		t.Errorf("walkthrough without a demo role:\n%s", b)
	}
}

// TestBannerWalkthroughRuns pastes the banner's walkthrough into sh, with
// this test binary standing in for writ and a fake server standing in for
// the node, and checks every step reaches the server as intended and the
// last verify reports the credential inactive (exit 3).
func TestBannerWalkthroughRuns(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "writ")); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	revoked := false
	f := &fakeServer{onCall: func(method string, req proto.Message) (proto.Message, error) {
		mu.Lock()
		defer mu.Unlock()
		switch method {
		case "AuthorizeAndIssue":
			return &writv1.AuthorizeAndIssueResponse{Decision: allowDecision, Lease: testLease, Credential: "eyJ.cred.sig", Index: 7}, nil
		case "Verify":
			if req.(*writv1.VerifyRequest).GetCredential() != "eyJ.cred.sig" {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("wrong credential"))
			}
			if revoked {
				return &writv1.VerifyResponse{Active: false, Reason: "revoked", Lease: &writv1.Lease{Id: "l_abc", Status: "revoked"}}, nil
			}
			return &writv1.VerifyResponse{Active: true, Lease: testLease}, nil
		case "Authorize":
			return &writv1.AuthorizeResponse{Decision: allowDecision, LeaseId: "l_abc"}, nil
		case "Revoke":
			if req.(*writv1.RevokeRequest).GetLeaseId() != "l_abc" {
				return nil, connect.NewError(connect.CodeNotFound, errors.New("no such lease"))
			}
			revoked = true
			return &writv1.RevokeResponse{Index: 8}, nil
		}
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New(method))
	}}
	url := startFake(t, f)
	seed := &seedResult{
		PolicySets: 3, Identities: 4, Roles: 4,
		DemoRole: &writv1.Role{Name: "deploy-api-ci", Environment: "prod", Identity: "ci/deploy-api", RoleId: "rid-123"},
		SecretID: "s3cr3t-'quoted'", Accessor: "acc-1",
	}
	banner := renderBanner(bannerData{APIURL: url, AdminToken: "writ_admin_test", Seed: seed, Example: devExample})
	_, script, ok := strings.Cut(banner, "In another shell:\n")
	if !ok {
		t.Fatalf("banner has no walkthrough:\n%s", banner)
	}
	cmd := exec.Command(sh, "-e", "-c", script)
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitNegative {
		t.Fatalf("walkthrough: %v (want exit %d from the last verify)\nscript:\n%s\noutput:\n%s", err, exitNegative, script, out.String())
	}

	var methods []string
	for _, c := range f.calls {
		methods = append(methods, c.method)
	}
	want := []string{"AuthorizeAndIssue", "Verify", "Authorize", "Verify", "Revoke", "Verify"}
	if diff := cmp.Diff(want, methods); diff != "" {
		t.Fatalf("calls (-want +got):\n%s\noutput:\n%s", diff, out.String())
	}
	issue := f.calls[0].req.(*writv1.AuthorizeAndIssueRequest)
	ar := issue.GetProof().GetApprole()
	if ar.GetRoleId() != "rid-123" || ar.GetSecretId() != "s3cr3t-'quoted'" {
		t.Errorf("proof %v", ar)
	}
	in := issue.GetIntent()
	if in.GetAction() != devExample.Action || resourceRef(in.GetResource().GetType(), in.GetResource().GetId()) != devExample.Resource {
		t.Errorf("intent %v", in)
	}
	wantAttrs, err := parseAttrs(devExample.ResourceAttrs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantAttrs, in.GetResource().GetAttributes(), protocmp.Transform()); diff != "" {
		t.Errorf("resource attributes (-want +got):\n%s", diff)
	}
	authz := f.calls[2].req.(*writv1.AuthorizeRequest)
	if diff := cmp.Diff(in.GetResource(), authz.GetResource(), protocmp.Transform()); diff != "" {
		t.Errorf("authorize resource differs from issue's (-issue +authorize):\n%s", diff)
	}
	if diff := cmp.Diff(in.GetContext(), authz.GetContext(), protocmp.Transform()); diff != "" {
		t.Errorf("authorize context differs from issue's:\n%s", diff)
	}
	wantCtx, err := parseContext(devExample.Context, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantCtx, in.GetContext(), protocmp.Transform()); diff != "" {
		t.Errorf("context (-want +got):\n%s", diff)
	}
	if got := f.calls[4].header.Get("Authorization"); got != "Bearer writ_admin_test" {
		t.Errorf("revoke sent Authorization %q", got)
	}
	if !strings.Contains(out.String(), "active         no") {
		t.Errorf("last verify did not say inactive:\n%s", out.String())
	}
}
