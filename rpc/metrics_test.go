package rpc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// scrape GETs /metrics and flattens it to series → value (histograms and
// summaries by their sample count, as name_count).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := func(n string) string { return n + "{" + strings.Join(labels, ",") + "}" }
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(name)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(name+"_count")] = float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_SUMMARY:
				out[key(name+"_count")] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return out
}

// TestMetricsMoveUnderLoad scrapes /metrics before, during and after a
// load of logins (good and bad), issuances, denies, authorizations,
// verifications, renewals and revocations, with the workload audit sink
// stuck for part of it, and checks that every metric the API documents
// moved: decision latency by method and result, issuance, renewal and
// revocation counts, live leases, login failures, Raft commit latency and
// apply lag, revocation propagation, audit spool depth and drops, and the
// bridged raft metrics.
func TestMetricsMoveUnderLoad(t *testing.T) {
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
	a := newAuditedNode(t, audit.Config{DurableTimeout: 300 * time.Millisecond, SpoolMaxBytes: 64 << 10, QueueLen: 64}, open,
		func(c *node.Config) { c.BridgeGoMetrics = true })
	base := "http://" + a.c.Members[0].APIAddr
	ctx := context.Background()
	before := scrape(t, base)
	mustOK(t, ignore(a.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: "ci/other", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
	}}))))

	// A shadow candidate that forbids everything: every prod decision narrows.
	mustOK(t, ignore(a.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "shadow/prod", Cedar: "@id(\"freeze\")\nforbid (principal, action, resource);\n",
	}}))))
	var creds []string
	for range 5 {
		issued, err := a.issue(ctx, a.secret)
		mustOK(t, err)
		creds = append(creds, issued.Msg.GetCredential())
	}
	deny, err := a.authz.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: a.roleID, SecretId: a.secret}}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}}, // no ticket
	}))
	mustOK(t, err)
	if deny.Msg.GetDecision().GetAllowed() {
		t.Fatal("no-ticket issuance allowed")
	}
	for range 3 {
		_, _ = a.issue(ctx, "wrong-secret")
	}
	for _, cr := range creds {
		mustOK(t, ignore(a.authz.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cr}))))
	}
	mustOK(t, ignore(a.authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: creds[0], Context: ticketCtx()}))))
	mustOK(t, ignore(a.authz.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_Credential{Credential: creds[1]}}))))
	child, err := a.delegate(ctx, creds[3])
	mustOK(t, err)
	_ = child
	batch, err := a.authz.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: creds[2], Items: []*writv1.BatchAuthorizeItem{
		{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticketCtx()},
	}}))
	mustOK(t, err)
	if !batch.Msg.GetResults()[0].GetDecision().GetAllowed() {
		t.Fatalf("batch item: %v", batch.Msg.GetResults()[0])
	}
	// Revocations by every admin target (none of them touch creds[2]).
	adminAuthz := writv1connect.NewAuthzServiceClient(httpClient, base, connect.WithInterceptors(bearerToken(nodetest.AdminToken)))
	mustOK(t, ignore(a.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "other", Environment: "prod", Identity: "ci/other", DefaultTtlSeconds: 60, MaxTtlSeconds: 600,
	}}))))
	for _, target := range []*writv1.RevokeRequest{
		{Target: &writv1.RevokeRequest_Subtree{Subtree: leaseOf(t, a, creds[3])}},
		{Target: &writv1.RevokeRequest_Identity{Identity: "ci/other"}},
		{Target: &writv1.RevokeRequest_Role{Role: "other"}},
		{Target: &writv1.RevokeRequest_Owner{Owner: "team-nobody"}},
		{Target: &writv1.RevokeRequest_LeaseId{LeaseId: leaseOf(t, a, creds[4])}},
	} {
		mustOK(t, ignore(adminAuthz.Revoke(ctx, connect.NewRequest(target))))
	}

	// Stick the workload sink: decisions pile up in the spool, then drop.
	mu.Lock()
	flaky.set("block")
	mu.Unlock()
	for range 600 {
		mustOK(t, a.authorize(ctx, creds[2]))
	}
	var during map[string]float64
	nodetest.Eventually(t, 20*time.Second, "spool depth and drops visible while the sink is stuck", func() error {
		during = scrape(t, base)
		if during["writ_audit_spool_depth_records{stream=workload}"] == 0 {
			return fmt.Errorf("spool depth 0")
		}
		if during["writ_audit_dropped_total{reason=spool_full,stream=workload}"]+during["writ_audit_dropped_total{reason=queue_full,stream=workload}"] == 0 {
			return fmt.Errorf("no drops")
		}
		return nil
	})
	mu.Lock()
	flaky.set("")
	mu.Unlock()
	var after map[string]float64
	nodetest.Eventually(t, 20*time.Second, "spool drained", func() error {
		after = scrape(t, base)
		if d := after["writ_audit_spool_depth_records{stream=workload}"]; d != 0 {
			return fmt.Errorf("spool depth %v", d)
		}
		return nil
	})

	increased := []string{
		"writ_decision_duration_seconds_count{method=AuthorizeAndIssue,result=allow}",
		"writ_decision_duration_seconds_count{method=AuthorizeAndIssue,result=deny}",
		"writ_decision_duration_seconds_count{method=AuthorizeAndIssue,result=error}",
		"writ_decision_duration_seconds_count{method=Authorize,result=allow}",
		"writ_decision_duration_seconds_count{method=Verify,result=allow}",
		"writ_decision_duration_seconds_count{method=Renew,result=allow}",
		"writ_leases_issued_total{via=login}",
		"writ_leases_issued_total{via=delegation}",
		"writ_decision_duration_seconds_count{method=Delegate,result=allow}",
		"writ_decision_duration_seconds_count{method=BatchAuthorize,result=allow}",
		"writ_revocations_total{target=subtree}",
		"writ_revocations_total{target=identity}",
		"writ_revocations_total{target=role}",
		"writ_revocations_total{target=owner}",
		"writ_revocations_total{target=lease}",
		"writ_policy_shadow_evaluations_total{result=narrowed,set=prod}",
		"writ_leases_renewed_total{}",
		"writ_revocations_total{target=credential}",
		"writ_revocation_propagation_seconds_count{}",
		"writ_live_leases{}",
		"writ_login_failures_total{method=approle,reason=invalid_secret_id}",
		"writ_raft_commit_duration_seconds_count{node=n1}",
		"writ_raft_apply_lag_seconds_count{node=n1}",
		"writ_raft_applied_index{node=n1}",
		"writ_raft_commit_index{node=n1}",
		"writ_audit_records_total{stream=workload}",
		"writ_audit_records_total{stream=human}",
		// raft's own metrics, bridged from go-metrics
		"writ_raft_commitTime_count{}",
		"writ_raft_fsm_apply_count{}",
	}
	for _, k := range increased {
		if after[k] <= before[k] {
			t.Errorf("%s: %v before, %v after: did not move", k, before[k], after[k])
		}
	}
	// Each shadow disagreement is on the audit record too.
	if !has(a.records(t, audit.StreamWorkload), map[string]any{"type": "shadow", "policy_set": "shadow/prod", "decision": "deny"}) {
		t.Error("no shadow disagreement record")
	}
	// Drops are counters (they stay); spool depth rose during the stall.
	if after["writ_audit_dropped_total{reason=spool_full,stream=workload}"]+after["writ_audit_dropped_total{reason=queue_full,stream=workload}"] == 0 {
		t.Error("writ_audit_dropped_total did not move")
	}
	for _, k := range []string{"writ_raft_apply_lag_entries{node=n1}", "writ_raft_is_leader{node=n1}", "writ_ready{node=n1}"} {
		if _, ok := after[k]; !ok {
			t.Errorf("%s missing from /metrics", k)
		}
	}
}

// leaseOf is the lease id of a credential (through Verify).
func leaseOf(t *testing.T, a *auditedNode, cred string) string {
	t.Helper()
	v, err := a.authz.Verify(context.Background(), connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
	mustOK(t, err)
	return v.Msg.GetLease().GetId()
}
