package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn/authntest"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// auditedNode is a one-node cluster with the audit log on (files in the
// member's data dir), example data loaded, and optional sink hook.
type auditedNode struct {
	c      *nodetest.Cluster
	dir    string
	admin  writv1connect.AdminServiceClient
	authz  writv1connect.AuthzServiceClient
	audit  writv1connect.AuditServiceClient
	roleID string
	secret string
	logs   *syncBuffer
}

func newAuditedNode(t *testing.T, cfg audit.Config, openSink func(audit.Stream, *audit.StreamConfig, string) (audit.Sink, error), configure ...func(*node.Config)) *auditedNode {
	t.Helper()
	logs := &syncBuffer{}
	a := &auditedNode{logs: logs}
	a.c = nodetest.New(t, 1, nodetest.Options{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Configure: func(m *nodetest.Member, nc *node.Config) {
			a.dir = filepath.Join(m.DataDir, "audit")
			c := cfg
			c.Dir = a.dir
			nc.Audit = &c
			nc.AuditOpenSink = openSink
			nc.RaftLogOutput = nil // raft logs through the node's logger too
			for _, f := range configure {
				f(nc)
			}
		},
	})
	base := "http://" + a.c.Members[0].APIAddr
	a.admin = a.c.Admin(0)
	a.authz = writv1connect.NewAuthzServiceClient(httpClient, base)
	a.audit = writv1connect.NewAuditServiceClient(httpClient, base, connect.WithInterceptors(streamBearer(nodetest.AdminToken)))
	ctx := context.Background()
	mustOK(t, ignore(a.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{Name: "prod", Cedar: policy}}))))
	mustOK(t, ignore(a.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
	}}))))
	role, err := a.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", DefaultTtlSeconds: 60, MaxTtlSeconds: 600, MaxRenewals: 5,
		MaxDelegationDepth: 2,
	}}))
	mustOK(t, err)
	sid, err := a.admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "deploy-api"}))
	mustOK(t, err)
	a.roleID, a.secret = role.Msg.GetRole().GetRoleId(), sid.Msg.GetSecretId()
	return a
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func bearerToken(tok string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+tok)
			return next(ctx, req)
		}
	}
}

// streamBearer sends the token on unary and streaming calls.
type streamBearer string

func (b streamBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return bearerToken(string(b))(next)
}

func (b streamBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b streamBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func ticketCtx() *structpb.Struct {
	st, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-1"})
	return st
}

func (a *auditedNode) issue(ctx context.Context, secret string) (*connect.Response[writv1.AuthorizeAndIssueResponse], error) {
	return a.authz.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: a.roleID, SecretId: secret}}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticketCtx()},
	}))
}

// delegate asks for a child of cred's lease for the same deploy.
func (a *auditedNode) delegate(ctx context.Context, cred string) (*connect.Response[writv1.DelegateResponse], error) {
	resp, err := a.c.Lease(0).Delegate(ctx, connect.NewRequest(&writv1.DelegateRequest{
		Credential: cred,
		Intent:     &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticketCtx(), TtlSeconds: 30},
	}))
	if err == nil && !resp.Msg.GetDecision().GetAllowed() {
		err = fmt.Errorf("delegation denied: %s", resp.Msg.GetDecision().GetReason())
	}
	return resp, err
}

// jwtLogins sets up a JWT auth config ("ci-oidc", inline JWKS) and a role
// "deploy-jwt" logging ci/deploy-api in with it; it returns the issuer.
func (a *auditedNode) jwtLogins(t *testing.T) *authntest.Issuer {
	t.Helper()
	ctx := context.Background()
	iss := authntest.NewIssuer(t, "https://ci-oidc.example", jose.ES256, "ci-1")
	mustOK(t, ignore(a.c.AuthConfigs(0).PutAuthConfig(ctx, connect.NewRequest(&writv1.PutAuthConfigRequest{Config: &writv1.AuthConfig{
		Name: "ci-oidc", Type: "jwt", Issuer: iss.URL, Jwks: authntest.JWKS(t, iss), BoundAudiences: []string{"writ"},
	}}))))
	mustOK(t, ignore(a.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-jwt", Environment: "prod", Identity: "ci/deploy-api", AuthConfigs: []string{"ci-oidc"}, DefaultTtlSeconds: 60, MaxTtlSeconds: 600,
	}}))))
	return iss
}

func (a *auditedNode) issueJWT(ctx context.Context, token string) (*connect.Response[writv1.AuthorizeAndIssueResponse], error) {
	return a.authz.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Jwt{Jwt: &writv1.JWTProof{Role: "deploy-jwt", Token: token}}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticketCtx()},
	}))
}

func ciClaims() map[string]any {
	now := time.Now()
	return map[string]any{"sub": "repo:acme/api", "aud": "writ", "iat": now.Add(-time.Minute), "exp": now.Add(5 * time.Minute)}
}

func (a *auditedNode) authorize(ctx context.Context, cred string) error {
	resp, err := a.authz.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
		Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticketCtx(),
	}))
	if err == nil && !resp.Msg.GetDecision().GetAllowed() {
		err = errors.New("denied")
	}
	return err
}

// records reads every chained record of a stream's file.
func (a *auditedNode) records(t *testing.T, stream audit.Stream) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, string(stream)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.SplitSeq(bytes.TrimSpace(b), []byte{'\n'}) {
		m := map[string]any{}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func has(recs []map[string]any, match map[string]any) bool {
	for _, r := range recs {
		ok := true
		for k, v := range match {
			if fmt.Sprint(r[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestAuditTrailHasNoSecrets runs login, issue, authorize, verify, renew
// and revoke on a real node, then checks that every event is on record and
// that no secret id, admin token or credential appears in any audit record
// or log line (raft's included), while their keyed hashes do correlate.
func TestAuditTrailHasNoSecrets(t *testing.T) {
	t.Parallel()
	a := newAuditedNode(t, audit.Config{CheckpointInterval: 100 * time.Millisecond}, nil)
	ctx := context.Background()
	const wrongSecret = "wrong-secret-0123456789abcdef"
	if _, err := a.issue(ctx, wrongSecret); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("bad login: %v", err)
	}
	issued, err := a.issue(ctx, a.secret)
	mustOK(t, err)
	cred := issued.Msg.GetCredential()
	mustOK(t, a.authorize(ctx, cred))
	child, err := a.delegate(ctx, cred)
	mustOK(t, err)
	childCred, childLease := child.Msg.GetCredential(), child.Msg.GetLease().GetId()
	// JWT logins: one good token, one signed by a key the config does not hold.
	iss := a.jwtLogins(t)
	goodJWT := iss.Mint(t, ciClaims())
	rogue := authntest.NewIssuer(t, iss.URL, jose.ES256, "ci-1")
	badJWT := rogue.Mint(t, ciClaims())
	jwtIssued, err := a.issueJWT(ctx, goodJWT)
	mustOK(t, err)
	if !jwtIssued.Msg.GetDecision().GetAllowed() {
		t.Fatalf("jwt issuance denied: %v", jwtIssued.Msg.GetDecision())
	}
	if _, err := a.issueJWT(ctx, badJWT); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("jwt login with a rogue key: %v", err)
	}
	ver, err := a.authz.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
	mustOK(t, err)
	if !ver.Msg.GetActive() {
		t.Fatal("credential not active")
	}
	renewed, err := a.authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: cred, Context: ticketCtx()}))
	mustOK(t, err)
	cred2 := renewed.Msg.GetCredential()
	garbage := "eyJhbGciOiJFZERTQSJ9.not-a-real-token.sig"
	_, _ = a.authz.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: garbage}))
	_, err = a.authz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Credential{Credential: cred2}}))
	mustOK(t, err)
	// A second lease, revoked by the admin.
	issued2, err := a.issue(ctx, a.secret)
	mustOK(t, err)
	adminAuthz := writv1connect.NewAuthzServiceClient(httpClient, "http://"+a.c.Members[0].APIAddr, connect.WithInterceptors(bearerToken(nodetest.AdminToken)))
	lease2 := issued2.Msg.GetLease().GetId()
	mustOK(t, ignore(adminAuthz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: lease2}}))))

	hashWrong, err := a.audit.HashAuditValue(ctx, connect.NewRequest(&writv1.HashAuditValueRequest{Value: wrongSecret}))
	mustOK(t, err)
	hashBadJWT, err := a.audit.HashAuditValue(ctx, connect.NewRequest(&writv1.HashAuditValueRequest{Value: badJWT}))
	mustOK(t, err)
	leaseID := issued.Msg.GetLease().GetId()
	want := []struct {
		stream audit.Stream
		match  map[string]any
	}{
		{audit.StreamHuman, map[string]any{"type": "admin", "method": "PutRole", "phase": "intent", "target": "role/deploy-api"}},
		{audit.StreamHuman, map[string]any{"type": "admin", "method": "PutRole", "phase": "result", "target": "role/deploy-api"}},
		{audit.StreamHuman, map[string]any{"type": "admin", "method": "CreateSecretID", "phase": "result"}},
		{audit.StreamWorkload, map[string]any{"type": "login", "decision": "deny", "reason": "invalid_secret_id"}},
		{audit.StreamWorkload, map[string]any{"type": "login", "decision": "allow", "auth_method": "approle"}},
		{audit.StreamWorkload, map[string]any{"type": "issue", "phase": "intent", "lease_id": leaseID, "decision": "allow"}},
		{audit.StreamWorkload, map[string]any{"type": "issue", "phase": "result", "lease_id": leaseID, "policy_set": "prod"}},
		{audit.StreamWorkload, map[string]any{"type": "use", "method": "Authorize", "lease_id": leaseID, "decision": "allow"}},
		{audit.StreamWorkload, map[string]any{"type": "issue", "method": "Delegate", "phase": "intent", "lease_id": childLease, "target": "lease/" + leaseID}},
		{audit.StreamWorkload, map[string]any{"type": "issue", "method": "Delegate", "phase": "result", "lease_id": childLease}},
		{audit.StreamWorkload, map[string]any{"type": "login", "decision": "allow", "auth_method": "jwt", "target": "auth_config/ci-oidc"}},
		{audit.StreamWorkload, map[string]any{"type": "issue", "phase": "result", "auth_method": "jwt", "lease_id": jwtIssued.Msg.GetLease().GetId()}},
		{audit.StreamWorkload, map[string]any{"type": "login", "decision": "deny", "auth_method": "jwt"}},
		{audit.StreamHuman, map[string]any{"type": "admin", "method": "PutAuthConfig", "phase": "intent", "target": "auth_config/ci-oidc"}},
		{audit.StreamWorkload, map[string]any{"type": "use", "method": "Verify", "lease_id": leaseID, "decision": "allow"}},
		{audit.StreamWorkload, map[string]any{"type": "use", "method": "Verify", "decision": "deny", "reason": "malformed_credential"}},
		{audit.StreamWorkload, map[string]any{"type": "renew", "phase": "result", "lease_id": leaseID}},
		{audit.StreamWorkload, map[string]any{"type": "revoke", "method": "Revoke", "target": "lease/" + leaseID}},
		{audit.StreamHuman, map[string]any{"type": "revoke", "method": "Revoke", "target": "lease/" + lease2}},
	}
	nodetest.Eventually(t, 20*time.Second, "every event on record", func() error {
		for _, w := range want {
			if !has(a.records(t, w.stream), w.match) {
				return fmt.Errorf("no %s record %v", w.stream, w.match)
			}
		}
		return nil
	})
	// The failed login's secret appears only as the hash `writ audit hash` computes.
	var loginFail map[string]any
	for _, r := range a.records(t, audit.StreamWorkload) {
		if r["type"] == "login" && r["decision"] == "deny" && r["auth_method"] == "approle" {
			loginFail = r
		}
	}
	if got := loginFail["hmac"].(map[string]any)["secret_id"]; got != hashWrong.Msg.GetHash() {
		t.Errorf("failed login hmac.secret_id = %v, want %s", got, hashWrong.Msg.GetHash())
	}
	// The refused JWT appears only as its keyed hash.
	var jwtFail map[string]any
	for _, r := range a.records(t, audit.StreamWorkload) {
		if r["type"] == "login" && r["decision"] == "deny" && r["auth_method"] == "jwt" {
			jwtFail = r
		}
	}
	if h, _ := jwtFail["hmac"].(map[string]any); h["jwt"] != hashBadJWT.Msg.GetHash() {
		t.Errorf("failed jwt login record %v, want hmac.jwt %s", jwtFail, hashBadJWT.Msg.GetHash())
	}
	for _, r := range a.records(t, audit.StreamWorkload) {
		if r["type"] == "use" && r["method"] == "Authorize" {
			actor := r["actor"].(map[string]any)
			if actor["id"] != "ci/deploy-api" || actor["kind"] != "ci_job" || actor["owner"] != "team-platform" || actor["human"] != false {
				t.Errorf("Authorize actor = %v", actor)
			}
		}
	}

	secrets := map[string]string{
		"admin token": nodetest.AdminToken, "secret id": a.secret, "wrong secret id": wrongSecret,
		"credential": cred, "renewed credential": cred2, "garbage credential": garbage,
		"delegated credential": childCred, "jwt": goodJWT, "refused jwt": badJWT, "jwt-issued credential": jwtIssued.Msg.GetCredential(),
	}
	// JWTs: their signature segments alone must not appear either.
	for name, c := range map[string]string{"credential": cred, "renewed credential": cred2, "delegated credential": childCred, "jwt": goodJWT, "refused jwt": badJWT} {
		secrets[name+" signature"] = c[strings.LastIndexByte(c, '.')+1:]
	}
	files, _ := filepath.Glob(filepath.Join(a.dir, "*"))
	spools, _ := filepath.Glob(filepath.Join(a.dir, "spool", "*"))
	corpus := map[string]string{"node log": a.logs.String()}
	for _, f := range append(files, spools...) {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			b, err := os.ReadFile(f)
			mustOK(t, err)
			corpus[f] = string(b)
		}
	}
	if !strings.Contains(corpus["node log"], `"component":"raft"`) {
		t.Errorf("raft's log lines do not go through the node's logger")
	}
	for where, text := range corpus {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the %s", where, name)
			}
		}
	}
	for _, s := range audit.Streams {
		f, err := os.Open(filepath.Join(a.dir, string(s)+".log"))
		mustOK(t, err)
		_, err = audit.Verify(f, audit.VerifyOptions{})
		f.Close()
		if err != nil {
			t.Errorf("%s chain: %v", s, err)
		}
	}
}

// flakySink wraps a real file sink; set("block") makes writes hang,
// set("fail") makes them fail, set("") restores it.
type flakySink struct {
	audit.Sink
	mu      sync.Mutex
	mode    string
	release chan struct{}
}

func (s *flakySink) set(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == "block" {
		close(s.release)
	}
	if mode == "block" {
		s.release = make(chan struct{})
	}
	s.mode = mode
}

func (s *flakySink) Write(p []byte) error {
	s.mu.Lock()
	mode, release := s.mode, s.release
	s.mu.Unlock()
	switch mode {
	case "fail":
		return errors.New("injected: disk full")
	case "block":
		<-release
	}
	return s.Sink.Write(p)
}

// TestAuditSinkFailureFailsIssuanceClosed: with the workload stream's sink
// stuck (or failing), issuance fails Unavailable (audit_unavailable) and
// writes nothing, decisions keep being answered through the spool, other
// streams are unaffected, and once the sink recovers the spool drains and
// a gap record says how many decision records were dropped.
func TestAuditSinkFailureFailsIssuanceClosed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"block", "fail"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var flaky *flakySink
			var mu sync.Mutex
			open := func(s audit.Stream, sc *audit.StreamConfig, path string) (audit.Sink, error) {
				fs, err := audit.OpenFileSink(sc, path)
				if err != nil || s != audit.StreamWorkload {
					return fs, err
				}
				mu.Lock()
				defer mu.Unlock()
				flaky = &flakySink{Sink: fs}
				return flaky, nil
			}
			a := newAuditedNode(t, audit.Config{DurableTimeout: 500 * time.Millisecond, SpoolMaxBytes: 64 << 10, QueueLen: 64}, open)
			ctx := context.Background()
			issued, err := a.issue(ctx, a.secret)
			mustOK(t, err)
			cred := issued.Msg.GetCredential()
			leasesBefore, err := a.admin.ListLeases(ctx, connect.NewRequest(&writv1.ListLeasesRequest{}))
			mustOK(t, err)

			mu.Lock()
			flaky.set(mode)
			mu.Unlock()
			// Issuance fails closed with a clear error and changes nothing.
			_, err = a.issue(ctx, a.secret)
			if connect.CodeOf(err) != connect.CodeUnavailable || reasonOf(err) != "audit_unavailable" {
				t.Fatalf("issue with a %s audit sink: %v (reason %q), want Unavailable audit_unavailable", mode, err, reasonOf(err))
			}
			// So does delegation: a child lease is an issuance.
			if _, err := a.delegate(ctx, cred); connect.CodeOf(err) != connect.CodeUnavailable || reasonOf(err) != "audit_unavailable" {
				t.Fatalf("delegate with a %s audit sink: %v (reason %q), want Unavailable audit_unavailable", mode, err, reasonOf(err))
			}
			leasesAfter, err := a.admin.ListLeases(ctx, connect.NewRequest(&writv1.ListLeasesRequest{}))
			mustOK(t, err)
			if len(leasesAfter.Msg.GetLeases()) != len(leasesBefore.Msg.GetLeases()) {
				t.Fatalf("leases %d -> %d: a lease was issued without its audit record", len(leasesBefore.Msg.GetLeases()), len(leasesAfter.Msg.GetLeases()))
			}
			// Admin changes go to the human stream, whose sink is fine.
			mustOK(t, ignore(a.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
				Id: "ci/other", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
			}}))))
			// Decisions keep flowing, more than the spool holds.
			const n = 600
			for i := range n {
				if err := a.authorize(ctx, cred); err != nil {
					t.Fatalf("authorize %d with a %s audit sink: %v", i, mode, err)
				}
			}
			mu.Lock()
			flaky.set("")
			mu.Unlock()
			var gap map[string]any
			nodetest.Eventually(t, 20*time.Second, "gap record and spooled decisions after recovery", func() error {
				uses := 0
				for _, r := range a.records(t, audit.StreamWorkload) {
					switch r["type"] {
					case "gap":
						gap = r
					case "use":
						uses++
					}
				}
				if gap == nil || uses == 0 {
					return fmt.Errorf("gap record %v, %d uses written", gap != nil, uses)
				}
				return nil
			})
			g := gap["gap"].(map[string]any)
			if g["dropped"].(float64) <= 0 || (g["reason"] != audit.DropSpoolFull && g["reason"] != audit.DropQueueFull) {
				t.Errorf("gap record %v", gap)
			}
		})
	}
}

// TestWatchAudit: a forwarder with the admin token receives each chained
// line as written (verifiable as a chain), and a caller without it is
// refused — and that refusal is itself a human-stream login failure.
func TestWatchAudit(t *testing.T) {
	t.Parallel()
	a := newAuditedNode(t, audit.Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "http://" + a.c.Members[0].APIAddr
	anon := writv1connect.NewAuditServiceClient(httpClient, base)
	st, err := anon.WatchAudit(ctx, connect.NewRequest(&writv1.WatchAuditRequest{}))
	if err == nil {
		st.Receive()
		err = st.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("watch without a token: %v", err)
	}
	// The refusal is recorded (asynchronously) on the human stream: wait
	// for it before watching, or it may be the first line watched.
	nodetest.Eventually(t, 20*time.Second, "the refused watch on record", func() error {
		if !has(a.records(t, audit.StreamHuman), map[string]any{"type": "login", "method": "WatchAudit", "auth_method": "admin_token", "decision": "deny"}) {
			return errors.New("no admin login failure record")
		}
		return nil
	})
	stream, err := a.audit.WatchAudit(ctx, connect.NewRequest(&writv1.WatchAuditRequest{Streams: []string{"human"}}))
	mustOK(t, err)
	defer stream.Close()
	for i := range 3 {
		mustOK(t, ignore(a.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
			Id: fmt.Sprintf("ci/w%d", i), Kind: "ci_job", Owner: "team-platform", Environment: "prod",
		}}))))
	}
	var lines []string
	for len(lines) < 6 && stream.Receive() { // intent + result per change
		if r := stream.Msg().GetRecord(); r != "" {
			lines = append(lines, r)
		}
	}
	if len(lines) < 6 {
		t.Fatalf("got %d lines: %v", len(lines), stream.Err())
	}
	reps, err := audit.Verify(strings.NewReader(strings.Join(lines, "\n")+"\n"), audit.VerifyOptions{})
	if err != nil || reps[0].Stream != audit.StreamHuman || reps[0].Records != len(lines) {
		t.Fatalf("watched lines do not verify as one human chain: %v %+v", err, reps)
	}
	if !strings.Contains(lines[0], `"target":"identity/ci/w0"`) {
		t.Errorf("first watched line: %s", lines[0])
	}
	cfg, err := a.audit.GetAuditConfig(ctx, connect.NewRequest(&writv1.GetAuditConfigRequest{}))
	mustOK(t, err)
	if y := cfg.Msg.GetYaml(); cfg.Msg.GetNodeId() != "n1" || !strings.Contains(y, "workload:") || !strings.Contains(y, "durability: fsync") || !strings.Contains(y, a.dir) {
		t.Errorf("GetAuditConfig = %s\n%s", cfg.Msg.GetNodeId(), y)
	}
}

// TestExpiryAudited: the leader's reaper records each expired lease.
func TestExpiryAudited(t *testing.T) {
	t.Parallel()
	fc := clock.NewFake(time.Now())
	a := newAuditedNode(t, audit.Config{}, nil, func(c *node.Config) { c.Clock = fc })
	ctx := context.Background()
	issued, err := a.issue(ctx, a.secret)
	mustOK(t, err)
	fc.Advance(2 * time.Minute) // past the 60s default ttl
	id := issued.Msg.GetLease().GetId()
	nodetest.Eventually(t, 20*time.Second, "expiry record", func() error {
		if !has(a.records(t, audit.StreamWorkload), map[string]any{"type": "expire", "lease_id": id, "method": "ReapExpired"}) {
			return errors.New("no expire record yet")
		}
		return nil
	})
}

// TestBatchAuthorizeAudit: a BatchAuthorize call leaves one use record per
// credential it names, each listing its items' decisions in request order
// with the item's own context, while what they share (actor, lease,
// context.auth, a failed credential's error and keyed hash) is written once.
func TestBatchAuthorizeAudit(t *testing.T) {
	t.Parallel()
	a := newAuditedNode(t, audit.Config{}, nil)
	ctx := context.Background()
	live, err := a.issue(ctx, a.secret)
	mustOK(t, err)
	gone, err := a.issue(ctx, a.secret)
	mustOK(t, err)
	// Revoking by credential completes the lease (the holder gave it up).
	mustOK(t, ignore(a.authz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Credential{Credential: gone.Msg.GetCredential()}}))))
	api := &writv1.Resource{Type: "Deployment", Id: "api"}
	own, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-10", "n": 2})
	items := []*writv1.BatchAuthorizeItem{
		{Action: "deploy", Resource: api, Context: ticketCtx()},                                       // 0 allow
		{Action: "deploy", Resource: api},                                                             // 1 Cedar deny
		{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "billing"}},             // 2 outside the scope
		{Credential: gone.Msg.GetCredential(), Action: "deploy", Resource: api, Context: ticketCtx()}, // 3 completed
		{Credential: "not-a-jwt", Action: "deploy", Resource: api},                                    // 4 malformed
		{Action: "deploy"}, // 5 no resource
		{Action: "deploy", Resource: api, Context: own}, // 6 allow
		{Credential: "not-a-jwt", Action: "deploy"},     // 7 malformed, and no resource
	}
	resp, err := a.authz.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: live.Msg.GetCredential(), Items: items}))
	mustOK(t, err)
	batchID, ok := strings.CutSuffix(resp.Msg.GetResults()[0].GetDecision().GetDecisionId(), "_0")
	if !ok {
		t.Fatalf("item 0's decision id %q", resp.Msg.GetResults()[0].GetDecision().GetDecisionId())
	}
	allowed, err := a.authz.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: live.Msg.GetCredential(), Items: items[:1]}))
	mustOK(t, err)
	allowedID, _ := strings.CutSuffix(allowed.Msg.GetResults()[0].GetDecision().GetDecisionId(), "_0")

	var recs []map[string]any
	byLease := map[string]map[string]any{}
	nodetest.Eventually(t, 20*time.Second, "the batches' records", func() error {
		recs, byLease = nil, map[string]map[string]any{}
		for _, r := range a.records(t, audit.StreamWorkload) {
			if r["method"] == "BatchAuthorize" && r["decision_id"] == batchID {
				recs = append(recs, r)
				byLease[fmt.Sprint(r["lease_id"])] = r
			}
			if r["method"] == "BatchAuthorize" && r["decision_id"] == allowedID {
				byLease["allowed"] = r
			}
		}
		if len(recs) < 3 || byLease["allowed"] == nil {
			return fmt.Errorf("%d records of the batch, all-allowed batch's: %v", len(recs), byLease["allowed"] != nil)
		}
		return nil
	})
	if len(recs) != 3 {
		t.Fatalf("%d records for 3 credentials: %v", len(recs), recs)
	}
	j := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	liveRec := byLease[live.Msg.GetLease().GetId()]
	if liveRec == nil {
		t.Fatalf("no record for the shared credential's lease: %v", recs)
	}
	if liveRec["type"] != "use" || liveRec["decision"] != "deny" || liveRec["error"] != nil {
		t.Errorf("shared credential's record: type %v decision %v error %v; want use, deny (it holds denies), no error", liveRec["type"], liveRec["decision"], liveRec["error"])
	}
	if auth, _ := liveRec["context"].(map[string]any)["auth"].(map[string]any); auth["lease_id"] != live.Msg.GetLease().GetId() {
		t.Errorf("record context.auth = %v", liveRec["context"])
	}
	wantItems := `[{"action":"deploy","context":{"ticket":"CHG-1"},"decision":"allow","i":0,"policies":["deploy-with-ticket"],"policy_set":"prod","policy_version":1,"reason":"allowed by deploy-with-ticket","resource":{"id":"api","type":"Deployment"}},` +
		`{"action":"deploy","decision":"deny","i":1,"policy_set":"prod","policy_version":1,"reason":"no permit matched","resource":{"id":"api","type":"Deployment"}},` +
		`{"action":"deploy","decision":"deny","i":2,"policy_set":"prod","policy_version":1,"reason":"outside the credential's scope","resource":{"id":"billing","type":"Deployment"}},` +
		`{"action":"deploy","error":{"code":"invalid_argument","reason":"invalid_argument"},"i":5},` +
		`{"action":"deploy","context":{"n":2,"ticket":"CHG-10"},"decision":"allow","i":6,"policies":["deploy-with-ticket"],"policy_set":"prod","policy_version":1,"reason":"allowed by deploy-with-ticket","resource":{"id":"api","type":"Deployment"}}]`
	if got := j(liveRec["items"]); got != wantItems {
		t.Errorf("shared credential's items:\n got %s\nwant %s", got, wantItems)
	}
	goneRec := byLease[gone.Msg.GetLease().GetId()]
	if goneRec == nil {
		t.Fatalf("no record for the revoked lease: %v", recs)
	}
	if got, want := j(goneRec["error"])+" "+j(goneRec["items"]), `{"code":"unauthenticated","reason":"completed"} [{"action":"deploy","i":3,"resource":{"id":"api","type":"Deployment"}}]`; got != want {
		t.Errorf("revoked credential's record: error and items %s, want %s", got, want)
	}
	bad := byLease["<nil>"]
	if bad == nil {
		t.Fatalf("no record for the malformed credential: %v", recs)
	}
	if h, _ := bad["hmac"].(map[string]any); !strings.HasPrefix(fmt.Sprint(h["credential"]), audit.HashPrefix) {
		t.Errorf("malformed credential's record hmac = %v, want its keyed hash", bad["hmac"])
	}
	if got, want := j(bad["error"])+" "+j(bad["items"]), `{"code":"unauthenticated","reason":"malformed_credential"} [{"action":"deploy","i":4,"resource":{"id":"api","type":"Deployment"}},{"action":"deploy","error":{"code":"invalid_argument","reason":"invalid_argument"},"i":7}]`; got != want {
		t.Errorf("malformed credential's record: error and items %s, want %s", got, want)
	}
	if r := byLease["allowed"]; r["decision"] != "allow" || len(r["items"].([]any)) != 1 {
		t.Errorf("all-allowed batch's record: decision %v, items %v", r["decision"], r["items"])
	}
}
