package main

import (
	"testing"
	"time"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/policies"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestDevExampleIsAllowed keeps the dev banner's walkthrough in step with
// the example data: the demo role writ dev would pick from
// policies.DevFixtures, asking devExample under the example set of its
// environment, must be allowed, and without the ticket it must not be.
func TestDevExampleIsAllowed(t *testing.T) {
	t.Parallel()
	fx, err := policies.DevFixtures()
	if err != nil {
		t.Fatal(err)
	}
	sets, err := policies.Sets()
	if err != nil {
		t.Fatal(err)
	}
	d := devData{}
	for _, i := range fx.Identities {
		d.Identities = append(d.Identities, &writv1.Identity{Id: i.ID, Kind: i.Kind, Owner: i.Owner, Environment: i.Environment})
	}
	for _, r := range fx.Roles {
		d.Roles = append(d.Roles, &writv1.Role{Name: r.Name, Environment: r.Environment, Identity: r.Identity, AuthMethods: r.AuthMethods})
	}
	demo := pickDemoRole(d.Roles, d.Identities)
	if demo == nil || demo.GetIdentity() != devExample.Identity {
		t.Fatalf("demo role %v, want one for %s", demo, devExample.Identity)
	}
	var ident *policies.Identity
	for i := range fx.Identities {
		if fx.Identities[i].ID == demo.GetIdentity() {
			ident = &fx.Identities[i]
		}
	}
	var defaultTTL time.Duration
	for _, r := range fx.Roles {
		if r.Name == demo.GetName() {
			defaultTTL = r.DefaultTTL
		}
	}
	var cedar []byte
	for _, s := range sets {
		if s.Name == demo.GetEnvironment() {
			cedar = s.Cedar
		}
	}
	if cedar == nil {
		t.Fatalf("no example policy set named %q", demo.GetEnvironment())
	}
	ps, err := authz.Compile(demo.GetEnvironment(), 1, cedar)
	if err != nil {
		t.Fatal(err)
	}

	typ, id, err := parseResource(devExample.Resource)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := parseAttrs(devExample.ResourceAttrs)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(contextJSON string) authz.Decision {
		t.Helper()
		cctx, err := parseContext(contextJSON, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := cctx.AsMap()
		ctx["requested_ttl"] = int64(defaultTTL / time.Second) // as rpc adds it
		dec, err := ps.Decide(authz.Request{
			Identity: &fsmpb.Identity{Id: ident.ID, Kind: ident.Kind, Owner: ident.Owner, Environment: ident.Environment, Attributes: ident.Attributes},
			Role:     demo.GetName(),
			Action:   devExample.Action,
			Resource: authz.Resource{Type: typ, ID: id, Attributes: attrs.AsMap()},
			Context:  ctx,
		})
		if err != nil {
			t.Fatal(err)
		}
		return dec
	}
	if dec := decide(devExample.Context); !dec.Allowed {
		t.Fatalf("the walkthrough's request is denied: %+v", dec)
	}
	if dec := decide(`{"pipeline_run":"local-1"}`); dec.Allowed {
		t.Fatalf("allowed without a ticket; the walkthrough no longer shows policy at work: %+v", dec)
	}
}
