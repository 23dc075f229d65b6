package rpc_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/rpc"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// TestBatchAuthorize: per-item decisions and errors in request order, one
// applied index, a bad item never fails its neighbours, and the shared
// credential serves every item that names none.
func TestBatchAuthorize(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	live, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	gone, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	mustOK(t, ignore(f.c.Authz(0, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: gone.Msg.GetLease().GetId()},
	}))))
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-3"})
	api := &writv1.Resource{Type: "Deployment", Id: "api"}
	// want: "allow", "deny", or the error reason. Every item must also match
	// what a single Authorize answers for the same question.
	items := []struct {
		name string
		item *writv1.BatchAuthorizeItem
		want string
	}{
		{"shared credential allowed", &writv1.BatchAuthorizeItem{Action: "deploy", Resource: api, Context: ticket}, "allow"},
		{"own credential allowed", &writv1.BatchAuthorizeItem{Credential: live.Msg.GetCredential(), Action: "deploy", Resource: api, Context: ticket}, "allow"},
		{"cedar deny", &writv1.BatchAuthorizeItem{Action: "deploy", Resource: api}, "deny"},
		{"outside scope", &writv1.BatchAuthorizeItem{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "billing"}, Context: ticket}, "deny"},
		{"revoked credential", &writv1.BatchAuthorizeItem{Credential: gone.Msg.GetCredential(), Action: "deploy", Resource: api, Context: ticket}, "revoked"},
		{"garbage credential", &writv1.BatchAuthorizeItem{Credential: "not-a-jwt", Action: "deploy", Resource: api}, "malformed_credential"},
		{"no resource", &writv1.BatchAuthorizeItem{Action: "deploy"}, "invalid_argument"},
	}
	req := &writv1.BatchAuthorizeRequest{Credential: live.Msg.GetCredential(), IncludeAnnotations: true, IncludeAuth: true}
	for _, it := range items {
		req.Items = append(req.Items, it.item)
	}
	resp, err := client.BatchAuthorize(ctx, connect.NewRequest(req))
	mustOK(t, err)
	if got := len(resp.Msg.GetResults()); got != len(items) {
		t.Fatalf("%d results for %d items", got, len(items))
	}
	if resp.Msg.GetAppliedIndex() < gone.Msg.GetIndex() {
		t.Fatalf("applied index %d is before the issuance at %d", resp.Msg.GetAppliedIndex(), gone.Msg.GetIndex())
	}
	for i, it := range items {
		got := resp.Msg.GetResults()[i]
		kind := got.GetError().GetReason()
		switch {
		case got.GetError() != nil && got.GetDecision() != nil:
			t.Errorf("%s: both a decision and an error: %v", it.name, got)
		case got.GetDecision().GetAllowed():
			kind = "allow"
		case got.GetDecision() != nil:
			kind = "deny"
		}
		if kind != it.want {
			t.Errorf("%s: got %s (%v), want %s", it.name, kind, got, it.want)
		}
		cred := it.item.GetCredential()
		if cred == "" {
			cred = req.GetCredential()
		}
		single, err := client.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: cred, Action: it.item.GetAction(), Resource: it.item.GetResource(), Context: it.item.GetContext(), IncludeAuth: true,
		}))
		if err != nil {
			if got.GetError().GetCode() != connect.CodeOf(err).String() || got.GetError().GetReason() != reasonOf(err) {
				t.Errorf("%s: batch error %v, single Authorize %v (%s)", it.name, got.GetError(), err, reasonOf(err))
			}
			continue
		}
		want := &writv1.BatchAuthorizeResult{Decision: single.Msg.GetDecision(), LeaseId: single.Msg.GetLeaseId()}
		if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&writv1.Decision{}, "decision_id")); diff != "" {
			t.Errorf("%s: batch differs from single Authorize (-single +batch):\n%s", it.name, diff)
		}
		if got.GetDecision().GetAllowed() && got.GetDecision().GetDecisionId() == "" {
			t.Errorf("%s: allowed decision without a decision id", it.name)
		}
	}
}

// TestBatchAuthorizeAnnotations: without include_annotations the
// determining policies carry ids only, and decision ids stay unique.
func TestBatchAuthorizeAnnotations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	live, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-4"})
	item := &writv1.BatchAuthorizeItem{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket}
	resp, err := client.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Credential: live.Msg.GetCredential(), Items: []*writv1.BatchAuthorizeItem{item, item, item}}))
	mustOK(t, err)
	seen := map[string]bool{}
	for i, r := range resp.Msg.GetResults() {
		d := r.GetDecision()
		if !d.GetAllowed() || len(d.GetDeterminingPolicies()) != 1 || d.GetDeterminingPolicies()[0].GetId() != "deploy-with-ticket" {
			t.Fatalf("item %d: %v", i, r)
		}
		if a := d.GetDeterminingPolicies()[0].GetAnnotations(); len(a) != 0 {
			t.Errorf("item %d: annotations %v without include_annotations", i, a)
		}
		if seen[d.GetDecisionId()] || d.GetDecisionId() == "" {
			t.Errorf("item %d: decision id %q is empty or repeated", i, d.GetDecisionId())
		}
		seen[d.GetDecisionId()] = true
	}
}

// TestIncludeAuth: Authorize and BatchAuthorize answer decision.auth (the
// credential's context.auth) only when asked, and asking changes nothing
// else in the decision.
func TestIncludeAuth(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	live, err := client.AuthorizeAndIssue(ctx, connect.NewRequest(f.issueReq(true)))
	mustOK(t, err)
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-5"})
	api := &writv1.Resource{Type: "Deployment", Id: "api"}
	ask := func(t *testing.T, batch, include bool) *writv1.Decision {
		t.Helper()
		if batch {
			resp, err := client.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{
				Credential: live.Msg.GetCredential(), IncludeAuth: include, IncludeAnnotations: true,
				Items: []*writv1.BatchAuthorizeItem{{Action: "deploy", Resource: api, Context: ticket}, {Action: "deploy", Resource: api}},
			}))
			mustOK(t, err)
			if d := resp.Msg.GetResults()[1].GetDecision(); d.GetAllowed() || (d.GetAuth() != nil) != include {
				t.Errorf("denied item: allowed %v, auth %v with include_auth %v", d.GetAllowed(), d.GetAuth(), include)
			}
			return resp.Msg.GetResults()[0].GetDecision()
		}
		resp, err := client.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: live.Msg.GetCredential(), Action: "deploy", Resource: api, Context: ticket, IncludeAuth: include,
		}))
		mustOK(t, err)
		return resp.Msg.GetDecision()
	}
	for _, batch := range []bool{false, true} {
		name := "Authorize"
		if batch {
			name = "BatchAuthorize"
		}
		t.Run(name, func(t *testing.T) {
			without, with := ask(t, batch, false), ask(t, batch, true)
			if without.GetAuth() != nil {
				t.Errorf("decision.auth %v without include_auth", without.GetAuth())
			}
			a := with.GetAuth().AsMap()
			if a["method"] != "credential" || a["lease_id"] != live.Msg.GetLease().GetId() {
				t.Errorf("decision.auth with include_auth: %v", a)
			}
			if !with.GetAllowed() {
				t.Fatalf("denied: %v", with)
			}
			if diff := cmp.Diff(without, with, protocmp.Transform(), protocmp.IgnoreFields(&writv1.Decision{}, "decision_id", "auth")); diff != "" {
				t.Errorf("include_auth changed the decision (-without +with):\n%s", diff)
			}
		})
	}
}

// TestBatchAuthorizeBadRequests: request-wide problems fail the call.
func TestBatchAuthorizeBadRequests(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client := writv1connect.NewAuthzServiceClient(http.DefaultClient, f.base)
	item := &writv1.BatchAuthorizeItem{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}}
	tooMany := &writv1.BatchAuthorizeRequest{Credential: "x"}
	for range rpc.MaxBatchAuthorizeItems + 1 {
		tooMany.Items = append(tooMany.Items, item)
	}
	cases := []struct {
		name string
		req  *writv1.BatchAuthorizeRequest
		code connect.Code
	}{
		{"no items", &writv1.BatchAuthorizeRequest{Credential: "x"}, connect.CodeInvalidArgument},
		{"too many items", tooMany, connect.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.BatchAuthorize(ctx, connect.NewRequest(tc.req))
			if connect.CodeOf(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
	// A shared credential that fails verification fails only its items.
	resp, err := client.BatchAuthorize(ctx, connect.NewRequest(&writv1.BatchAuthorizeRequest{Items: []*writv1.BatchAuthorizeItem{item, item}}))
	mustOK(t, err)
	for i, r := range resp.Msg.GetResults() {
		if r.GetError().GetCode() != "invalid_argument" || r.GetDecision() != nil {
			t.Errorf("item %d without any credential: %v", i, r)
		}
	}
}
