package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func reasonErr(code connect.Code, msg, reason string, meta map[string]string) error {
	e := connect.NewError(code, errors.New(msg))
	d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: "writ.dev", Metadata: meta})
	if err != nil {
		panic(err)
	}
	e.AddDetail(d)
	return e
}

var (
	allowDecision = &writv1.Decision{
		Allowed:             true,
		DecisionId:          "d_1",
		DeterminingPolicies: []*writv1.DeterminingPolicy{{Id: "policy0", Annotations: map[string]string{"id": "deploy-with-ticket"}}},
		PolicySet:           "prod",
		PolicyVersion:       3,
		Reason:              "permitted by deploy-with-ticket",
	}
	denyDecision = &writv1.Decision{
		Allowed:             false,
		DeterminingPolicies: []*writv1.DeterminingPolicy{{Id: "policy4", Annotations: map[string]string{"id": "forbid-no-ticket"}}},
		Reason:              "forbidden by forbid-no-ticket",
	}
	testLease = &writv1.Lease{
		Id: "l_abc", Identity: "ci/deploy-api", Role: "deploy-api-ci", Status: "active",
		Scope:     &writv1.Scope{Actions: []string{"deploy"}, Resources: []*writv1.Resource{{Type: "Deployment", Id: "api-prod"}}},
		IssuedAt:  timestamppb.New(testNow),
		ExpiresAt: timestamppb.New(testNow.Add(15 * time.Minute)),
	}
)

// TestCommands drives each command over HTTP against the fake server and
// checks the request it sent, its output and its exit code.
func TestCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cedarFile := filepath.Join(dir, "prod.cedar")
	if err := os.WriteFile(cedarFile, []byte("permit(principal, action, resource);\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctxFile := filepath.Join(dir, "ctx.json")
	if err := os.WriteFile(ctxFile, []byte(`{"ticket": "CHG-9", "n": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	token := map[string]string{"WRIT_TOKEN": "tok"}

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		stdin   string
		resps   map[string]proto.Message
		errs    map[string]error
		code    int
		method  string        // the RPC expected (empty: none)
		req     proto.Message // the request expected
		stdout  []string      // substrings of stdout
		exact   string        // exact stdout, when set
		stderr  []string
		noCalls bool
	}{
		{
			name: "identity put", env: token,
			args:   []string{"identity", "put", "ci/deploy-api", "--kind", "ci_job", "--owner", "team-platform", "--env", "prod", "--attr", "repo=github.com/acme/api", "--attr", "tier=1", "--description", "deploys", "--expect-version", "2"},
			resps:  map[string]proto.Message{"PutIdentity": &writv1.PutIdentityResponse{Identity: &writv1.Identity{Id: "ci/deploy-api", Kind: "ci_job", Status: "active", Version: 3, Attributes: map[string]string{"tier": "1", "repo": "github.com/acme/api"}}, Index: 17}},
			method: "PutIdentity",
			req: &writv1.PutIdentityRequest{ExpectVersion: 2, Identity: &writv1.Identity{
				Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod", Status: "active", Description: "deploys",
				Attributes: map[string]string{"repo": "github.com/acme/api", "tier": "1"},
			}},
			stdout: []string{"id           ci/deploy-api", "attributes   repo=github.com/acme/api, tier=1", "index        17"},
		},
		{
			name: "identity put disabled create-only", env: token,
			args:   []string{"identity", "put", "x", "--kind", "agent", "--owner", "o", "--env", "dev", "--disabled", "--create-only"},
			method: "PutIdentity",
			req:    &writv1.PutIdentityRequest{CreateOnly: true, Identity: &writv1.Identity{Id: "x", Kind: "agent", Owner: "o", Environment: "dev", Status: "disabled"}},
		},
		{
			name: "identity put missing flags", args: []string{"identity", "put", "x", "--kind", "agent"},
			code: exitUsage, stderr: []string{`required flag(s) "env", "owner" not set`}, noCalls: true,
		},
		{
			name: "identity put bad attr", args: []string{"identity", "put", "x", "--kind", "a", "--owner", "o", "--env", "e", "--attr", "novalue"},
			code: exitUsage, stderr: []string{`--attr: "novalue": want key=value`}, noCalls: true,
		},
		{
			name: "identity put duplicate attr", args: []string{"identity", "put", "x", "--kind", "a", "--owner", "o", "--env", "e", "--attr", "a=1", "--attr", "a=2"},
			code: exitUsage, stderr: []string{`key "a" given twice`}, noCalls: true,
		},
		{
			name: "identity get with read options", env: token,
			args:   []string{"identity", "get", "ci/deploy-api", "--consistency", "linearizable", "--min-index", "9"},
			method: "GetIdentity",
			req:    &writv1.GetIdentityRequest{Id: "ci/deploy-api", Read: &writv1.ReadOptions{Consistency: writv1.Consistency_CONSISTENCY_LINEARIZABLE, MinIndex: 9}},
		},
		{
			name: "identity get bad consistency", args: []string{"identity", "get", "x", "--consistency", "eventual"},
			code: exitUsage, stderr: []string{`consistency "eventual": want stale or linearizable`}, noCalls: true,
		},
		{
			name: "identity list table",
			args: []string{"identity", "list"},
			resps: map[string]proto.Message{"ListIdentities": &writv1.ListIdentitiesResponse{Identities: []*writv1.Identity{
				{Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod", Status: "active", Epoch: 1, Version: 2},
				{Id: "agent/support-bot", Kind: "agent", Status: "disabled"},
			}}},
			method: "ListIdentities", req: &writv1.ListIdentitiesRequest{},
			exact: "ID                 KIND    OWNER          ENV   STATUS    EPOCH  VERSION\n" +
				"ci/deploy-api      ci_job  team-platform  prod  active    1      2\n" +
				"agent/support-bot  agent   -              -     disabled  0      0\n",
		},
		{
			name: "identity delete", args: []string{"identity", "delete", "x"},
			resps:  map[string]proto.Message{"DeleteIdentity": &writv1.DeleteIdentityResponse{Index: 5}},
			method: "DeleteIdentity", req: &writv1.DeleteIdentityRequest{Id: "x"},
			stdout: []string{"deleted  x", "index    5"},
		},
		{
			name: "role put",
			args: []string{"role", "put", "deploy-api-ci", "--env", "prod", "--identity", "ci/deploy-api", "--auth-method", "approle", "--default-ttl", "15m", "--max-ttl", "1h", "--max-renewals", "3", "--max-live-leases", "10"},
			resps: map[string]proto.Message{"PutRole": &writv1.PutRoleResponse{
				Role: &writv1.Role{Name: "deploy-api-ci", RoleId: "r_123", DefaultTtlSeconds: 900, MaxTtlSeconds: 3600}, Index: 4,
			}},
			method: "PutRole",
			req: &writv1.PutRoleRequest{Role: &writv1.Role{
				Name: "deploy-api-ci", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"},
				DefaultTtlSeconds: 900, MaxTtlSeconds: 3600, MaxRenewals: 3, MaxLiveLeases: 10,
			}},
			stdout: []string{"role id          r_123", "default ttl      15m0s", "max ttl          1h0m0s"},
		},
		{
			name: "role put bad ttl", args: []string{"role", "put", "r", "--env", "e", "--identity", "i", "--default-ttl", "1.5s"},
			code: exitUsage, stderr: []string{`invalid argument "1.5s" for "--default-ttl" flag: duration "1.5s" is not a whole number of seconds`}, noCalls: true,
		},
		{
			name: "role put default above max", args: []string{"role", "put", "r", "--env", "e", "--identity", "i", "--default-ttl", "2h", "--max-ttl", "1h"},
			code: exitUsage, stderr: []string{"--default-ttl 2h0m0s is longer than --max-ttl 1h0m0s"}, noCalls: true,
		},
		{
			name: "role put comma methods", args: []string{"role", "put", "r", "--env", "e", "--identity", "i", "--auth-method", "approle,jwt"},
			code: exitUsage, stderr: []string{"one method name per flag"}, noCalls: true,
		},
		{
			name: "role get", args: []string{"role", "get", "r"}, method: "GetRole", req: &writv1.GetRoleRequest{Name: "r"},
		},
		{
			name: "role list", args: []string{"role", "ls"}, method: "ListRoles", req: &writv1.ListRolesRequest{},
			resps:  map[string]proto.Message{"ListRoles": &writv1.ListRolesResponse{Roles: []*writv1.Role{{Name: "r", AuthMethods: []string{"approle", "jwt"}, DefaultTtlSeconds: 60}}}},
			stdout: []string{"NAME", "approle,jwt", "1m0s"},
		},
		{
			name: "role delete", args: []string{"role", "rm", "r"}, method: "DeleteRole", req: &writv1.DeleteRoleRequest{Name: "r"},
		},
		{
			name: "secret-id create",
			args: []string{"secret-id", "create", "deploy-api-ci", "--uses", "5", "--ttl", "24h", "--cidr", "10.0.0.0/8", "--cidr", "192.168.1.7", "--meta", "by=ci"},
			resps: map[string]proto.Message{"CreateSecretID": &writv1.CreateSecretIDResponse{
				SecretId: "s3cr3t", Accessor: "acc_1", ExpiresAt: timestamppb.New(testNow.Add(24 * time.Hour)), Index: 8,
			}},
			method: "CreateSecretID",
			req: &writv1.CreateSecretIDRequest{Role: "deploy-api-ci", NumUses: 5, TtlSeconds: 86400,
				Cidrs: []string{"10.0.0.0/8", "192.168.1.7/32"}, Metadata: map[string]string{"by": "ci"}},
			stdout: []string{"secret id  s3cr3t", "accessor   acc_1", "expires    2030-01-03T03:04:05Z (in 24h0m0s)"},
			stderr: []string{"shown only now"},
		},
		{
			name: "secret-id create never expires", args: []string{"secret-id", "create", "r"},
			resps:  map[string]proto.Message{"CreateSecretID": &writv1.CreateSecretIDResponse{SecretId: "s", Accessor: "a"}},
			method: "CreateSecretID", req: &writv1.CreateSecretIDRequest{Role: "r"},
			stdout: []string{"expires    never"},
		},
		{
			name: "secret-id create bad cidr", args: []string{"secret-id", "create", "r", "--cidr", "10.0.0.1/8"},
			code: exitUsage, stderr: []string{"has host bits set; did you mean 10.0.0.0/8?"}, noCalls: true,
		},
		{
			name: "secret-id list", args: []string{"secret-id", "list", "r"}, method: "ListSecretIDs", req: &writv1.ListSecretIDsRequest{Role: "r"},
			resps:  map[string]proto.Message{"ListSecretIDs": &writv1.ListSecretIDsResponse{SecretIds: []*writv1.SecretIDInfo{{Accessor: "acc_1", NumUses: 5, Uses: 2}, {Accessor: "acc_2"}}}},
			stdout: []string{"acc_1     2/5", "acc_2     ∞     never"},
		},
		{
			name: "secret-id revoke", args: []string{"secret-id", "revoke", "acc_1"}, method: "RevokeSecretID", req: &writv1.RevokeSecretIDRequest{Accessor: "acc_1"},
		},
		{
			name: "policy put from file", args: []string{"policy", "put", "prod", "--file", cedarFile, "--expect-version", "3"},
			method: "PutPolicySet",
			req:    &writv1.PutPolicySetRequest{ExpectVersion: 3, PolicySet: &writv1.PolicySet{Name: "prod", Cedar: "permit(principal, action, resource);\n"}},
		},
		{
			name: "policy put from stdin", args: []string{"policy", "put", "prod", "-f", "-"}, stdin: "forbid(principal, action, resource);",
			method: "PutPolicySet",
			req:    &writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: "forbid(principal, action, resource);"}},
		},
		{
			name: "policy put missing file", args: []string{"policy", "put", "prod", "--file", filepath.Join(dir, "nope.cedar")},
			code: exitUsage, stderr: []string{"--file: open", "no such file"}, noCalls: true,
		},
		{
			name: "policy put empty", args: []string{"policy", "put", "prod", "--file", "-"}, stdin: "  \n",
			code: exitUsage, stderr: []string{"no policies in it"}, noCalls: true,
		},
		{
			name: "policy put invalid cedar", args: []string{"policy", "put", "prod", "--file", cedarFile},
			errs: map[string]error{"PutPolicySet": reasonErr(connect.CodeInvalidArgument, "policy0: parse error at 1:5", "invalid_policy", nil)},
			code: exitError, method: "PutPolicySet",
			stderr: []string{"error: invalid_argument: policy0: parse error at 1:5 (reason: invalid_policy)\n"},
		},
		{
			name: "policy get prints source", args: []string{"policy", "get", "prod"}, method: "GetPolicySet", req: &writv1.GetPolicySetRequest{Name: "prod"},
			resps:  map[string]proto.Message{"GetPolicySet": &writv1.GetPolicySetResponse{PolicySet: &writv1.PolicySet{Name: "prod", Version: 2, Cedar: "permit(principal, action, resource);\n"}}},
			stdout: []string{"version          2", "\n\npermit(principal, action, resource);\n"},
		},
		{
			name: "policy get field", args: []string{"policy", "get", "prod", "-o", "field=policySet.cedar"},
			resps: map[string]proto.Message{"GetPolicySet": &writv1.GetPolicySetResponse{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: "permit(principal, action, resource);"}}},
			exact: "permit(principal, action, resource);\n", method: "GetPolicySet",
		},
		{
			name: "policy list", args: []string{"policy", "list"}, method: "ListPolicySets", req: &writv1.ListPolicySetsRequest{},
		},
		{
			name: "policy delete", args: []string{"policy", "delete", "prod"}, method: "DeletePolicySet", req: &writv1.DeletePolicySetRequest{Name: "prod"},
		},
		{
			name: "issue allowed",
			args: []string{"issue", "--role-id", "r_123", "--secret-id", "s3cr3t", "--action", "deploy", "--resource", "Deployment::api-prod",
				"--resource-attr", "team=api", "--resource-attr", "replicas:=3", "--context", `{"ticket":"CHG-1234"}`, "--ttl", "10m", "--request-id", "job-42"},
			resps: map[string]proto.Message{"AuthorizeAndIssue": &writv1.AuthorizeAndIssueResponse{
				Decision: allowDecision, Lease: testLease, Credential: "eyJ.cred.sig", Index: 21,
			}},
			method: "AuthorizeAndIssue",
			req: &writv1.AuthorizeAndIssueRequest{
				Proof: &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: "r_123", SecretId: "s3cr3t"}}},
				Intent: &writv1.Intent{Action: "deploy", TtlSeconds: 600,
					Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod", Attributes: &structpb.Struct{Fields: map[string]*structpb.Value{
						"team": structpb.NewStringValue("api"), "replicas": structpb.NewNumberValue(3)}}},
					Context: &structpb.Struct{Fields: map[string]*structpb.Value{"ticket": structpb.NewStringValue("CHG-1234")}},
				},
				RequestId: "job-42",
			},
			stdout: []string{
				"decision     allowed\n",
				"policies     deploy-with-ticket [policy0]\n",
				"reason       permitted by deploy-with-ticket\n",
				"policy set   prod v3\n",
				"lease        l_abc\n",
				"expires      2030-01-02T03:19:05Z (in 15m0s)\n",
				"index        21\n",
				"\neyJ.cred.sig\n",
			},
		},
		{
			name: "issue credential-only with secret from env",
			args: []string{"issue", "--role-id", "r_123", "--action", "deploy", "--resource", "Deployment::api-prod", "--credential-only"},
			env:  map[string]string{"WRIT_SECRET_ID": "from-env"},
			resps: map[string]proto.Message{"AuthorizeAndIssue": &writv1.AuthorizeAndIssueResponse{
				Decision: allowDecision, Lease: testLease, Credential: "eyJ.cred.sig", Index: 21,
			}},
			method: "AuthorizeAndIssue",
			req: &writv1.AuthorizeAndIssueRequest{
				Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: "r_123", SecretId: "from-env"}}},
				Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}},
			},
			exact: "eyJ.cred.sig\n",
		},
		{
			name:   "issue secret from stdin",
			args:   []string{"issue", "--role-id", "r", "--secret-id", "-", "--action", "a", "--resource", `Ns::T::"x y"`, "--context", "@" + ctxFile},
			stdin:  "piped-secret\n",
			resps:  map[string]proto.Message{"AuthorizeAndIssue": &writv1.AuthorizeAndIssueResponse{Decision: allowDecision, Credential: "c"}},
			method: "AuthorizeAndIssue",
			req: &writv1.AuthorizeAndIssueRequest{
				Proof: &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: "r", SecretId: "piped-secret"}}},
				Intent: &writv1.Intent{Action: "a", Resource: &writv1.Resource{Type: "Ns::T", Id: "x y"},
					Context: &structpb.Struct{Fields: map[string]*structpb.Value{"ticket": structpb.NewStringValue("CHG-9"), "n": structpb.NewNumberValue(2)}}},
			},
		},
		{
			name:   "issue denied exits 3 and keeps stdout empty with credential-only",
			args:   []string{"issue", "--role-id", "r", "--secret-id", "s", "--action", "deploy", "--resource", "Deployment::api-prod", "--credential-only"},
			resps:  map[string]proto.Message{"AuthorizeAndIssue": &writv1.AuthorizeAndIssueResponse{Decision: denyDecision}},
			method: "AuthorizeAndIssue", code: exitNegative, exact: "",
			stderr: []string{"decision  denied", "policies  forbid-no-ticket [policy4]"},
		},
		{
			name: "issue denied json", args: []string{"issue", "--role-id", "r", "--secret-id", "s", "--action", "deploy", "--resource", "D::x", "-o", "json"},
			resps:  map[string]proto.Message{"AuthorizeAndIssue": &writv1.AuthorizeAndIssueResponse{Decision: denyDecision}},
			method: "AuthorizeAndIssue", code: exitNegative,
			stdout: []string{`"allowed": false`, `"credential": ""`},
		},
		{
			name: "issue bad login", args: []string{"issue", "--role-id", "r", "--secret-id", "bad", "--action", "a", "--resource", "D::x"},
			errs:   map[string]error{"AuthorizeAndIssue": reasonErr(connect.CodeUnauthenticated, "login failed", "invalid_secret_id", nil)},
			method: "AuthorizeAndIssue", code: exitError,
			stderr: []string{"error: unauthenticated: login failed (reason: invalid_secret_id)\n"},
		},
		{
			name: "issue without secret", args: []string{"issue", "--role-id", "r", "--action", "a", "--resource", "D::x"},
			code: exitUsage, stderr: []string{"secret id is required (argument, flag, or WRIT_SECRET_ID)"}, noCalls: true,
		},
		{
			name: "issue without role id", args: []string{"issue", "--secret-id", "s", "--action", "a", "--resource", "D::x"},
			code: exitUsage, stderr: []string{"--role-id is required"}, noCalls: true,
		},
		{
			name: "issue bad resource", args: []string{"issue", "--role-id", "r", "--secret-id", "s", "--action", "a", "--resource", "api-prod"},
			code: exitUsage, stderr: []string{`--resource: resource "api-prod": no "::"; want TYPE::ID`}, noCalls: true,
		},
		{
			name: "issue context not an object", args: []string{"issue", "--role-id", "r", "--secret-id", "s", "--action", "a", "--resource", "D::x", "--context", "[1]"},
			code: exitUsage, stderr: []string{"--context: context: want a JSON object"}, noCalls: true,
		},
		{
			name: "issue context bad json", args: []string{"issue", "--role-id", "r", "--secret-id", "s", "--action", "a", "--resource", "D::x", "--context", "{\"a\":\n tru}"},
			code: exitUsage, stderr: []string{"not valid JSON: line 2, column"}, noCalls: true,
		},
		{
			name:   "authorize allowed",
			args:   []string{"authorize", "--credential", "eyJ.cred.sig", "--action", "deploy", "--resource", "Deployment::api-prod", "--consistency", "stale", "--min-index", "21"},
			resps:  map[string]proto.Message{"Authorize": &writv1.AuthorizeResponse{Decision: allowDecision, LeaseId: "l_abc", AppliedIndex: 22}},
			method: "Authorize",
			req: &writv1.AuthorizeRequest{Credential: "eyJ.cred.sig", Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
				Read: &writv1.ReadOptions{Consistency: writv1.Consistency_CONSISTENCY_STALE, MinIndex: 21}, IncludeAuth: true},
			stdout: []string{"decision       allowed", "lease          l_abc", "applied index  22"},
		},
		{
			name: "authorize denied exits 3", args: []string{"authorize", "--action", "deploy", "--resource", "Deployment::api-prod"},
			env:    map[string]string{"WRIT_CREDENTIAL": "env-cred"},
			resps:  map[string]proto.Message{"Authorize": &writv1.AuthorizeResponse{Decision: denyDecision, LeaseId: "l_abc"}},
			method: "Authorize", code: exitNegative,
			req:    &writv1.AuthorizeRequest{Credential: "env-cred", Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}, IncludeAuth: true},
			stdout: []string{"decision       denied", "reason         forbidden by forbid-no-ticket"},
		},
		{
			name: "authorize credential from stdin", args: []string{"authorize", "--credential", "-", "--action", "a", "--resource", "D::x"},
			stdin: "  piped.cred  \n", resps: map[string]proto.Message{"Authorize": &writv1.AuthorizeResponse{Decision: allowDecision}},
			method: "Authorize", req: &writv1.AuthorizeRequest{Credential: "piped.cred", Action: "a", Resource: &writv1.Resource{Type: "D", Id: "x"}, IncludeAuth: true},
		},
		{
			name: "authorize both want stdin", args: []string{"authorize", "--credential", "-", "--context", "@-", "--action", "a", "--resource", "D::x"},
			stdin: "c", code: exitUsage, stderr: []string{"both want stdin"}, noCalls: true,
		},
		{
			name: "authorize revoked credential is an error", args: []string{"authorize", "--credential", "c", "--action", "a", "--resource", "D::x"},
			errs:   map[string]error{"Authorize": reasonErr(connect.CodeUnauthenticated, "lease revoked", "revoked", nil)},
			method: "Authorize", code: exitError, stderr: []string{"error: unauthenticated: lease revoked (reason: revoked)"},
		},
		{
			name: "batch authorize from stdin", args: []string{"batch-authorize", "--credential", "shared", "--items", "-"},
			stdin: `[{"action":"deploy","resource":{"type":"Deployment","id":"api"},"context":{"ticket":"CHG-1"}},
			         {"credential":"own","action":"read","resource":{"type":"Secret","id":"db"}}]`,
			resps: map[string]proto.Message{"BatchAuthorize": &writv1.BatchAuthorizeResponse{AppliedIndex: 9, Results: []*writv1.BatchAuthorizeResult{
				{Decision: allowDecision, LeaseId: "l_abc"}, {Decision: allowDecision, LeaseId: "l_def"}}}},
			method: "BatchAuthorize",
			req: &writv1.BatchAuthorizeRequest{Credential: "shared", Items: []*writv1.BatchAuthorizeItem{
				{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: &structpb.Struct{Fields: map[string]*structpb.Value{"ticket": structpb.NewStringValue("CHG-1")}}},
				{Credential: "own", Action: "read", Resource: &writv1.Resource{Type: "Secret", Id: "db"}},
			}},
			stdout: []string{"deploy on Deployment::api", "allowed", "read on Secret::db", "applied index  9"},
		},
		{
			name: "batch authorize a deny or an error exits 3", args: []string{"batch-authorize", "--items", "-"},
			env:   map[string]string{"WRIT_CREDENTIAL": "env-cred"},
			stdin: "{\"action\":\"a\",\"resource\":{\"type\":\"D\",\"id\":\"x\"}}\n{\"action\":\"b\",\"resource\":{\"type\":\"D\",\"id\":\"y\"}}\n",
			resps: map[string]proto.Message{"BatchAuthorize": &writv1.BatchAuthorizeResponse{Results: []*writv1.BatchAuthorizeResult{
				{Decision: denyDecision}, {Error: &writv1.ItemError{Code: "unauthenticated", Reason: "revoked"}}}}},
			method: "BatchAuthorize", code: exitNegative,
			req: &writv1.BatchAuthorizeRequest{Credential: "env-cred", Items: []*writv1.BatchAuthorizeItem{
				{Action: "a", Resource: &writv1.Resource{Type: "D", Id: "x"}}, {Action: "b", Resource: &writv1.Resource{Type: "D", Id: "y"}}}},
			stdout: []string{"denied", "forbidden by forbid-no-ticket", "error", "unauthenticated: revoked"},
		},
		{
			name: "batch authorize bad items", args: []string{"batch-authorize", "--items", "-"}, stdin: `[{"action": 3}]`,
			code: exitUsage, stderr: []string{"--items: item 0:"}, noCalls: true,
		},
		{
			name: "batch authorize without items", args: []string{"batch-authorize"},
			code: exitUsage, stderr: []string{"--items is required"}, noCalls: true,
		},
		{
			name: "verify active", args: []string{"verify", "eyJ.cred.sig"},
			resps:  map[string]proto.Message{"Verify": &writv1.VerifyResponse{Active: true, Lease: testLease, AppliedIndex: 30}},
			method: "Verify", req: &writv1.VerifyRequest{Credential: "eyJ.cred.sig"},
			stdout: []string{"active         yes", "lease          l_abc", "scope          deploy on Deployment::api-prod", "expires        2030-01-02T03:19:05Z (in 15m0s)"},
		},
		{
			name: "verify inactive exits 3", args: []string{"verify", "-"}, stdin: "eyJ.cred.sig\n",
			resps:  map[string]proto.Message{"Verify": &writv1.VerifyResponse{Active: false, Reason: "revoked", Lease: &writv1.Lease{Id: "l_abc", Status: "revoked", StatusReason: "walkthrough"}}},
			method: "Verify", req: &writv1.VerifyRequest{Credential: "eyJ.cred.sig"}, code: exitNegative,
			stdout: []string{"active         no", "reason         revoked", "status         revoked (walkthrough)"},
		},
		{
			name: "verify field lease id", args: []string{"verify", "c", "-o", "field=lease.id"},
			resps:  map[string]proto.Message{"Verify": &writv1.VerifyResponse{Active: true, Lease: testLease}},
			method: "Verify", exact: "l_abc\n",
		},
		{
			name: "verify field unknown", args: []string{"verify", "c", "-o", "field=lease.nope"},
			resps:  map[string]proto.Message{"Verify": &writv1.VerifyResponse{Active: true, Lease: testLease}},
			method: "Verify", code: exitUsage, stderr: []string{`lease.nope: no field "nope" in writ.v1.Lease`},
		},
		{
			name: "verify no credential", args: []string{"verify"}, code: exitUsage,
			stderr: []string{"credential is required (argument, flag, or WRIT_CREDENTIAL)"}, noCalls: true,
		},
		{
			name: "renew", args: []string{"renew", "c", "--ttl", "5m", "--context", `{"why":"more"}`},
			resps:  map[string]proto.Message{"Renew": &writv1.RenewResponse{Decision: allowDecision, Lease: testLease, Credential: "new.cred", Index: 40}},
			method: "Renew", req: &writv1.RenewRequest{Credential: "c", TtlSeconds: 300, Context: &structpb.Struct{Fields: map[string]*structpb.Value{"why": structpb.NewStringValue("more")}}},
			stdout: []string{"index        40", "\nnew.cred\n"},
		},
		{
			name: "renew credential-only", args: []string{"renew", "c", "--credential-only"},
			resps:  map[string]proto.Message{"Renew": &writv1.RenewResponse{Decision: allowDecision, Credential: "new.cred"}},
			method: "Renew", exact: "new.cred\n",
		},
		{
			name: "revoke lease", args: []string{"revoke", "--lease", "l_abc", "--reason", "done"},
			resps:  map[string]proto.Message{"Revoke": &writv1.RevokeResponse{Index: 50}},
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: "l_abc"}, Reason: "done"},
			stdout: []string{"revoked  lease l_abc", "index    50"},
		},
		{
			name: "revoke identity", args: []string{"revoke", "--identity", "ci/deploy-api"},
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Identity{Identity: "ci/deploy-api"}},
		},
		{
			name: "revoke credential from stdin", args: []string{"revoke", "--credential", "-"}, stdin: "mine\n",
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Credential{Credential: "mine"}},
		},
		{
			name: "revoke role", args: []string{"revoke", "--role", "deploy-api-ci", "--reason", "rotated"},
			resps:  map[string]proto.Message{"Revoke": &writv1.RevokeResponse{Index: 51}},
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Role{Role: "deploy-api-ci"}, Reason: "rotated"},
			stdout: []string{"revoked  role deploy-api-ci", "index    51"},
		},
		{
			name: "revoke subtree", args: []string{"revoke", "--subtree", "l_abc"},
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Subtree{Subtree: "l_abc"}},
		},
		{
			name: "revoke owner dry run", args: []string{"revoke", "--owner", "team-api", "--dry-run"},
			resps:  map[string]proto.Message{"Revoke": &writv1.RevokeResponse{DryRun: true, LiveLeases: 1234, AppliedIndex: 77}},
			method: "Revoke", req: &writv1.RevokeRequest{Target: &writv1.RevokeRequest_Owner{Owner: "team-api"}, DryRun: true},
			stdout: []string{"would revoke   owner team-api", "live leases    1234", "applied index  77"},
		},
		{
			name: "delegate", args: []string{"delegate", "--credential", "parent.cred", "--action", "deploy", "--resource", "Deployment::api-prod", "--ttl", "30s", "--credential-only"},
			resps:  map[string]proto.Message{"Delegate": &writv1.DelegateResponse{Decision: allowDecision, Credential: "child.cred"}},
			method: "Delegate", req: &writv1.DelegateRequest{Credential: "parent.cred", Intent: &writv1.Intent{
				Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"}, TtlSeconds: 30,
			}},
			exact: "child.cred\n",
		},
		{
			name: "delegate denied", args: []string{"delegate", "--credential", "p", "--action", "deploy", "--resource", "Deployment::x"},
			resps:  map[string]proto.Message{"Delegate": &writv1.DelegateResponse{Decision: denyDecision}},
			method: "Delegate", code: exitNegative, stdout: []string{"decision  denied"},
		},
		{
			name: "lease complete", args: []string{"lease", "complete", "-", "--reason", "task done"}, stdin: "mine\n",
			resps:  map[string]proto.Message{"Complete": &writv1.CompleteResponse{Index: 60}},
			method: "Complete", req: &writv1.CompleteRequest{Credential: "mine", Reason: "task done"},
			stdout: []string{"completed  yes", "index      60"},
		},
		{
			name: "watch revocations", args: []string{"watch", "revocations", "--after", "41"},
			resps: map[string]proto.Message{"WatchRevocations": &writv1.WatchRevocationsResponse{UpToIndex: 42, Events: []*writv1.RevocationEvent{
				{Index: 42, Kind: "identity", Target: "ci/deploy-api", CommittedAt: timestamppb.New(testNow)},
			}}},
			method: "WatchRevocations", req: &writv1.WatchRevocationsRequest{AfterIndex: 41},
			stdout: []string{"42  identity  ci/deploy-api  2030-01-02T03:04:05Z"},
		},
		{
			name: "key rotate", args: []string{"key", "rotate", "--overlap", "2h"},
			resps:  map[string]proto.Message{"RotateSigningKey": &writv1.RotateSigningKeyResponse{Key: &writv1.SigningKeyInfo{Kid: "k2", CreatedAt: timestamppb.New(testNow), Current: true}, Index: 70}},
			method: "RotateSigningKey", req: &writv1.RotateSigningKeyRequest{OverlapSeconds: 7200},
			stdout: []string{"kid      k2", "index    70"},
		},
		{
			name: "key list", args: []string{"key", "list"},
			resps: map[string]proto.Message{"ListSigningKeys": &writv1.ListSigningKeysResponse{Keys: []*writv1.SigningKeyInfo{
				{Kid: "k2", CreatedAt: timestamppb.New(testNow), Current: true},
				{Kid: "k1", CreatedAt: timestamppb.New(testNow), RetireAt: timestamppb.New(testNow.Add(time.Hour))},
			}}},
			method: "ListSigningKeys", req: &writv1.ListSigningKeysRequest{},
			stdout: []string{"k2   signing", "k1   verifying"},
		},
		{
			name: "revoke two targets", args: []string{"revoke", "--lease", "l", "--identity", "i"},
			code: exitUsage, stderr: []string{"were all set"}, noCalls: true,
		},
		{
			name: "revoke no target", args: []string{"revoke"},
			code: exitUsage, stderr: []string{"at least one of the flags in the group [lease identity role owner subtree credential] is required"}, noCalls: true,
		},
		{
			name: "lease get", args: []string{"lease", "get", "l_abc"},
			resps:  map[string]proto.Message{"GetLease": &writv1.GetLeaseResponse{Lease: testLease}},
			method: "GetLease", req: &writv1.GetLeaseRequest{Id: "l_abc"},
			stdout: []string{"identity      ci/deploy-api", "issued        2030-01-02T03:04:05Z (now)"},
		},
		{
			name: "lease list", args: []string{"lease", "list", "--identity", "ci/deploy-api", "--limit", "5"},
			resps:  map[string]proto.Message{"ListLeases": &writv1.ListLeasesResponse{Leases: []*writv1.Lease{testLease}}},
			method: "ListLeases", req: &writv1.ListLeasesRequest{Identity: "ci/deploy-api", Limit: 5},
			stdout: []string{"l_abc  ci/deploy-api  deploy-api-ci  active  deploy on Deployment::api-prod  2030-01-02T03:19:05Z  0"},
		},
		{
			name: "lease list bad limit", args: []string{"lease", "list", "--limit", "-1"},
			code: exitUsage, stderr: []string{`invalid argument "-1" for "--limit"`}, noCalls: true,
		},
		{
			name: "status",
			args: []string{"status"},
			resps: map[string]proto.Message{"Status": &writv1.StatusResponse{
				NodeId: "n1", State: "leader", LeaderId: "n1", LeaderApiAddr: "127.0.0.1:7400", Term: 2, AppliedIndex: 10, CommitIndex: 10, LastLogIndex: 10,
				LastContact: durationpb.New(0),
				Members: []*writv1.Member{
					{Id: "n1", RaftAddr: "127.0.0.1:7401", ApiAddr: "127.0.0.1:7400", Suffrage: "voter", Leader: true, GossipState: "alive",
						Stats: &writv1.ServerStats{State: "leader", AppliedIndex: 10, LastContact: durationpb.New(0), FsmVersion: 2}},
					{Id: "n2", RaftAddr: "127.0.0.1:7411", ApiAddr: "127.0.0.1:7410", Suffrage: "voter", GossipState: "dead",
						StatsError: "unreachable: unavailable"},
				},
				GossipEncrypted: true, ClusterFsmVersion: 2,
			}},
			method: "Status", req: &writv1.StatusRequest{},
			stdout: []string{
				"node            n1 (leader)\n",
				"leader          n1 at 127.0.0.1:7400\n",
				"term            2\n",
				"applied index   10\n",
				"cluster fsm     version 2 (what the leader writes for: the oldest server's)\n",
				"gossip key      yes\n",
				"MEMBER  GOSSIP  SUFFRAGE  STATE        APPLIED  LAG  CONTACT  FSM  RAFT ADDR       API ADDR        LEADER\n",
				"n1      alive   voter     leader       10       0    0s       2    127.0.0.1:7401  127.0.0.1:7400  *\n",
				"n2      dead    voter     unreachable  -        -    -        -    127.0.0.1:7411  127.0.0.1:7410  -\n",
			},
		},
		{
			name: "status json", args: []string{"status", "-o", "json"},
			resps:  map[string]proto.Message{"Status": &writv1.StatusResponse{NodeId: "n1", Term: 2}},
			method: "Status", stdout: []string{"{\n  \"nodeId\": \"n1\",\n", `"term": "2"`, `"members": []`},
		},
		{
			name: "join", args: []string{"join", "--node-id", "n2", "--raft-addr", "127.0.0.1:7411", "--api-addr", "127.0.0.1:7410"},
			resps:  map[string]proto.Message{"Join": &writv1.JoinResponse{Index: 12}},
			method: "Join", req: &writv1.JoinRequest{NodeId: "n2", RaftAddr: "127.0.0.1:7411", ApiAddr: "127.0.0.1:7410"},
			stdout: []string{"joined  n2", "index   12"},
		},
		{
			name: "join bad raft addr", args: []string{"join", "--node-id", "n2", "--raft-addr", "nope", "--api-addr", "127.0.0.1:7410"},
			code: exitUsage, stderr: []string{`--raft-addr "nope": want host:port`}, noCalls: true,
		},
		{
			name: "leave", args: []string{"leave", "n2"}, method: "Leave", req: &writv1.LeaveRequest{NodeId: "n2"},
		},
		{
			name: "leave self", args: []string{"leave"}, method: "Leave", req: &writv1.LeaveRequest{Self: true},
			resps: map[string]proto.Message{"Leave": &writv1.LeaveResponse{Index: 40}}, stdout: []string{"left the cluster and is stopping", "index  40"},
		},
		{
			name: "leave two args", args: []string{"leave", "n2", "n3"}, code: exitUsage, stderr: []string{"at most one argument"}, noCalls: true,
		},
		{
			name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate" for "writ"`}, noCalls: true,
		},
		{
			name: "unknown flag", args: []string{"status", "--frob"}, code: exitUsage, stderr: []string{"unknown flag: --frob"}, noCalls: true,
		},
		{
			name: "bad output", args: []string{"status", "-o", "yaml"}, code: exitUsage, stderr: []string{`output "yaml": want text, json or field=PATH`}, noCalls: true,
		},
		{
			name: "bad protocol", args: []string{"status", "--protocol", "soap"}, code: exitUsage, stderr: []string{`unknown protocol "soap"`}, noCalls: true,
		},
		{
			name: "bench server args without a local cluster", args: []string{"bench", "--addr", "http://127.0.0.1:1", "--server-arg=--gc-percent=100"},
			code: exitUsage, stderr: []string{"--server-arg needs --local"}, noCalls: true,
		},
		{
			name: "group without subcommand prints help", args: []string{"identity"}, stdout: []string{"Available Commands:", "put"}, noCalls: true,
		},
		{
			name: "not found error", args: []string{"identity", "get", "nope"},
			errs:   map[string]error{"GetIdentity": reasonErr(connect.CodeNotFound, "identity nope not found", "RESULT_CODE_NOT_FOUND", nil)},
			method: "GetIdentity", code: exitError,
			stderr: []string{"error: not_found: identity nope not found (reason: RESULT_CODE_NOT_FOUND)\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{resps: tc.resps, errs: tc.errs}
			url := startFake(t, f)
			env := map[string]string{"WRIT_ADDR": url}
			for k, v := range tc.env {
				env[k] = v
			}
			res := runCLI(t, env, tc.stdin, tc.args...)
			if res.code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tc.code, res.stdout, res.stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			if tc.exact != "" || (tc.code == exitNegative && tc.stdout == nil && tc.exact == "") {
				if res.stdout != tc.exact {
					t.Errorf("stdout = %q, want %q", res.stdout, tc.exact)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			if tc.noCalls {
				if n := f.count(); n != 0 {
					t.Errorf("%d calls reached the server, want none", n)
				}
				return
			}
			if tc.method == "" {
				return
			}
			call := f.last(t)
			if call.method != tc.method {
				t.Fatalf("called %s, want %s", call.method, tc.method)
			}
			if tc.req != nil {
				if diff := cmp.Diff(tc.req, call.req, protocmp.Transform()); diff != "" {
					t.Errorf("request (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestTokenAndProtocols(t *testing.T) {
	t.Parallel()
	for _, wire := range []string{"connect", "grpc", "grpcweb"} {
		t.Run(wire, func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{resps: map[string]proto.Message{"Status": &writv1.StatusResponse{NodeId: "n1"}}}
			url := startFake(t, f)
			// host:port without a scheme, token by flag over the env.
			addr := strings.TrimPrefix(url, "http://")
			res := runCLI(t, map[string]string{"WRIT_TOKEN": "env-token"}, "", "status", "--addr", addr, "--token", "flag-token", "--protocol", wire)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			call := f.last(t)
			if got := call.header.Get("Authorization"); got != "Bearer flag-token" {
				t.Errorf("Authorization = %q", got)
			}
			if ua := call.header.Get("User-Agent"); !strings.HasPrefix(ua, "writ-cli/") {
				t.Errorf("User-Agent = %q", ua)
			}
			ct := call.header.Get("Content-Type")
			want := map[string]string{"connect": "application/proto", "grpc": "application/grpc", "grpcweb": "application/grpc-web"}[wire]
			if !strings.HasPrefix(ct, want) {
				t.Errorf("Content-Type = %q, want %s", ct, want)
			}
		})
	}
	t.Run("env token, no token", func(t *testing.T) {
		t.Parallel()
		f := &fakeServer{}
		url := startFake(t, f)
		if res := runCLI(t, map[string]string{"WRIT_ADDR": url, "WRIT_TOKEN": "env-token"}, "", "status"); res.code != 0 {
			t.Fatal(res.stderr)
		}
		if got := f.last(t).header.Get("Authorization"); got != "Bearer env-token" {
			t.Errorf("Authorization = %q", got)
		}
		if res := runCLI(t, map[string]string{"WRIT_ADDR": url}, "", "status"); res.code != 0 {
			t.Fatal(res.stderr)
		}
		if got := f.last(t).header.Get("Authorization"); got != "" {
			t.Errorf("Authorization sent without a token: %q", got)
		}
	})
}

func TestJoinFollowsLeader(t *testing.T) {
	t.Parallel()
	leader := &fakeServer{resps: map[string]proto.Message{"Join": &writv1.JoinResponse{Index: 99}}}
	leaderURL := startFake(t, leader)
	follower := &fakeServer{errs: map[string]error{"Join": reasonErr(connect.CodeUnavailable, "not the leader", "not_leader",
		map[string]string{"leader_id": "n1", "leader_addr": strings.TrimPrefix(leaderURL, "http://")})}}
	followerURL := startFake(t, follower)
	res := runCLI(t, map[string]string{"WRIT_TOKEN": "tok"}, "", "join", followerURL, "--node-id", "n3", "--raft-addr", "127.0.0.1:7421", "--api-addr", "127.0.0.1:7420")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "index   99") || !strings.Contains(res.stderr, "following the leader") {
		t.Errorf("stdout %q stderr %q", res.stdout, res.stderr)
	}
	if got := leader.last(t).header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("leader got Authorization %q", got)
	}
}

func TestJSONOutputIsParseable(t *testing.T) {
	t.Parallel()
	f := &fakeServer{resps: map[string]proto.Message{"Verify": &writv1.VerifyResponse{Active: true, Lease: testLease,
		Claims: mustStruct(t, map[string]any{"sub": "ci/deploy-api"})}}}
	url := startFake(t, f)
	res := runCLI(t, map[string]string{"WRIT_ADDR": url}, "", "verify", "c", "-o", "json")
	if res.code != 0 {
		t.Fatal(res.stderr)
	}
	var got struct {
		Active bool `json:"active"`
		Lease  struct {
			ID string `json:"id"`
		} `json:"lease"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	if !got.Active || got.Lease.ID != "l_abc" || got.Claims["sub"] != "ci/deploy-api" {
		t.Errorf("got %+v", got)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	f := &fakeServer{onCall: func(string, proto.Message) (proto.Message, error) {
		<-block
		return nil, nil
	}}
	url := startFake(t, f)
	// Registered after startFake's cleanup, so it runs first and lets the
	// server close.
	t.Cleanup(func() { close(block) })
	res := runCLI(t, map[string]string{"WRIT_ADDR": url}, "", "status", "--timeout", "50ms")
	if res.code != exitError || !strings.Contains(res.stderr, "error: deadline_exceeded") {
		t.Errorf("exit %d stderr %q", res.code, res.stderr)
	}
}
