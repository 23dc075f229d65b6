package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/policies"
)

// TestEntitiesAgreeWithSchema checks that what Decide hands to Cedar — the
// principal of every kind with its parents and tags, the resource, the
// action and an intent context as the rpc layer builds it — validates
// against policies/writ.cedarschema. The validator is cedar-go's x/exp one
// (pinned by go.mod), used here only.
func TestEntitiesAgreeWithSchema(t *testing.T) {
	t.Parallel()
	var s schema.Schema
	if err := s.UnmarshalCedar(policies.Schema); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(rs, validate.WithStrict())

	ctx := map[string]any{
		// As a caller sends it (structpb: numbers are float64)...
		"purpose": "nightly backup", "task_id": "t-1", "pipeline_run": "run/1",
		"ticket": "INC-1", "break_glass": true,
		// ...and as rpc adds it.
		"requested_ttl": int64(900),
		"auth": map[string]any{
			"method": "approle", "role": "backup-nightly",
			"secret_accessor": "acc_1", "source_ip": "127.0.0.1",
		},
	}
	resources := []Resource{
		{Type: "Secret", ID: "s", Attributes: map[string]any{"environment": "prod", "owner": "o", "path": "app/x"}},
		{Type: "Database", ID: "d", Attributes: map[string]any{"environment": "prod", "owner": "o", "engine": "postgres", "tier": "primary"}},
		{Type: "Tool", ID: "kb.search", Attributes: map[string]any{"environment": "prod", "owner": "o", "risk": "low"}},
		{Type: "Deployment", ID: "api", Attributes: map[string]any{"environment": "prod", "owner": "o", "service": "api"}},
		{Type: "Bucket", ID: "b", Attributes: map[string]any{"environment": "prod", "owner": "o", "path": "backups/o/x"}},
		{Type: "Repository", ID: "r", Attributes: map[string]any{"environment": "prod", "owner": "o", "visibility": "private"}},
	}
	actionFor := map[string]string{
		"Secret": "read_secret", "Database": "issue_db_credential", "Tool": "call_tool",
		"Deployment": "deploy", "Bucket": "write_object", "Repository": "push",
	}
	for _, kind := range []string{"workload", "ci_job", "agent", "service_account"} {
		for _, res := range resources {
			req := Request{
				Identity: &fsmpb.Identity{
					Id: "id/" + kind, Kind: kind, Owner: "o", Environment: "prod",
					Attributes: map[string]string{"job": "backup", "repo": "github.com/acme/api"},
				},
				Role:     "r",
				Action:   actionFor[res.Type],
				Resource: res,
				Context:  ctx,
			}
			ents := new(entities)
			creq, err := newRequest(req, ents, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Request(creq); err != nil {
				t.Errorf("%s %s: request: %v", kind, res.Type, err)
			}
			check := func(uid types.EntityUID) {
				e, ok := ents.Get(uid)
				if !ok {
					t.Fatalf("%s: not found", uid)
				}
				if err := v.Entity(e); err != nil {
					t.Errorf("%s %s: entity %s: %v", kind, res.Type, uid, err)
				}
			}
			check(creq.Principal)
			check(creq.Resource)
			for _, p := range ents.parents[:ents.nParents] {
				check(p)
			}
			if ents.nParents != 3 {
				t.Errorf("parents = %v, want role, team and environment", ents.parents[:ents.nParents])
			}
		}
	}
}

// TestCheckEntityModel: Writ's schema describes its entity model; a schema
// that drops a principal type or its tags does not.
func TestCheckEntityModel(t *testing.T) {
	t.Parallel()
	s, err := ParseSchema("writ.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckEntityModel(); err != nil {
		t.Fatal(err)
	}
	noTags := strings.Replace(string(policies.Schema), "} tags String;", "};", 1)
	for name, text := range map[string]string{
		"no tags":  noTags,
		"no owner": strings.Replace(string(policies.Schema), "  owner: String,\n  environment: String,\n  // workload", "  environment: String,\n  // workload", 1),
	} {
		if text == string(policies.Schema) {
			t.Fatalf("%s: the schema changed; update the test", name)
		}
		s, err := ParseSchema(name, []byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := s.CheckEntityModel(); !errors.Is(err, ErrSchema) {
			t.Errorf("%s: CheckEntityModel = %v", name, err)
		}
	}
}
