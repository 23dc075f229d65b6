// Package policytest runs policy test cases: YAML files of requests with
// their expected decisions and determining policies, against Cedar policy
// sets. `writ policy test DIR` and `writ policy diff` use it, and so do
// authz's and policies' own tests (through authz/authztest).
//
// A case file:
//
//	policy_set: prod          # default set for the file: a named set...
//	cedar: |                  # ...or inline Cedar text (one of the two)
//	  permit (principal, action, resource);
//	identities:               # named principals the cases refer to
//	  ci: {id: ci/deploy-api, kind: ci_job, owner: api, environment: prod,
//	       attributes: {repo: github.com/acme/api}}
//	cases:
//	  - name: ci deploys with a ticket
//	    principal: ci          # a key of identities, or inline:
//	    identity: {...}        # (one of the two)
//	    role: deploy-api
//	    action: deploy
//	    resource: {type: Deployment, id: api, attributes: {environment: prod}}
//	    context: {ticket: CHG-1}   # converted like JSON: numbers are float64
//	    policy_set: staging    # or cedar: — overrides the file's set
//	    expect:
//	      allowed: true
//	      determining: [prod-ci-deploy-with-ticket]
//	      errors: ["policy x: "]   # one substring per expected error, in order
//	      reason: allowed by ...   # optional, exact
//	      invalid: context.ttl     # Decide must fail with ErrInvalidRequest
//	                               # whose message contains this
//
// The entities of a case are Writ's: the principal built from the identity
// (with its role, team and environment parents and its attributes as tags)
// and the resource with its attributes, exactly as a node builds them.
package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// File is one case file.
type File struct {
	Path       string              `yaml:"-"`
	PolicySet  string              `yaml:"policy_set"`
	Cedar      string              `yaml:"cedar"`
	Identities map[string]Identity `yaml:"identities"`
	Cases      []Case              `yaml:"cases"`
}

// Identity is a principal as the fsm stores it.
type Identity struct {
	ID          string            `yaml:"id"`
	Kind        string            `yaml:"kind"`
	Owner       string            `yaml:"owner"`
	Environment string            `yaml:"environment"`
	Attributes  map[string]string `yaml:"attributes"`
}

// Resource is the resource of a case.
type Resource struct {
	Type       string         `yaml:"type"`
	ID         string         `yaml:"id"`
	Attributes map[string]any `yaml:"attributes"`
}

// Expect is what a case must decide.
type Expect struct {
	Allowed     bool     `yaml:"allowed"`
	Determining []string `yaml:"determining"`
	Errors      []string `yaml:"errors"`
	Reason      string   `yaml:"reason"`
	Invalid     string   `yaml:"invalid"`
}

// Case is one request and its expected decision.
type Case struct {
	Name      string         `yaml:"name"`
	Principal string         `yaml:"principal"`
	Identity  *Identity      `yaml:"identity"`
	Role      string         `yaml:"role"`
	Action    string         `yaml:"action"`
	Resource  Resource       `yaml:"resource"`
	Context   map[string]any `yaml:"context"`
	PolicySet string         `yaml:"policy_set"`
	Cedar     string         `yaml:"cedar"`
	Expect    Expect         `yaml:"expect"`
}

// ParseFile decodes one case file; unknown fields are errors so a typo
// cannot silently drop an expectation.
func ParseFile(path string, b []byte) (File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	f.Path = path
	seen := map[string]bool{}
	for _, c := range f.Cases {
		if c.Name == "" || seen[c.Name] {
			return File{}, fmt.Errorf("%s: case names must be unique and non-empty: %q", path, c.Name)
		}
		seen[c.Name] = true
	}
	return f, nil
}

// IsCaseFile reports whether YAML text is a case file (has a top-level
// "cases" key), so a directory can hold other YAML (fixtures) beside them.
func IsCaseFile(b []byte) bool {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(b, &top); err != nil {
		return true // let ParseFile report the syntax error
	}
	_, ok := top["cases"]
	return ok
}

// Dir is what LoadDir found: the named policy sets (every *.cedar file,
// named by its base name without .cedar) and the case files (every *.yaml
// or *.yml file with a top-level "cases" key), in path order.
type Dir struct {
	Sets      map[string][]byte
	SetPaths  map[string]string
	Files     []File
	Skipped   []string // YAML files that are not case files
	SetsOrder []string
}

// LoadDir walks dir.
func LoadDir(dir string) (*Dir, error) {
	d := &Dir{Sets: map[string][]byte{}, SetPaths: map[string]string{}}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		ext := filepath.Ext(path)
		switch ext {
		case ".cedar":
			name := strings.TrimSuffix(filepath.Base(path), ext)
			if prev, dup := d.SetPaths[name]; dup {
				return fmt.Errorf("policy set %q is defined twice: %s and %s", name, prev, path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			d.Sets[name], d.SetPaths[name] = b, path
			d.SetsOrder = append(d.SetsOrder, name)
		case ".yaml", ".yml":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if !IsCaseFile(b) {
				d.Skipped = append(d.Skipped, path)
				return nil
			}
			f, err := ParseFile(path, b)
			if err != nil {
				return err
			}
			d.Files = append(d.Files, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(d.SetsOrder)
	return d, nil
}

// Request builds the authz request of case c in file f. Context and
// resource attributes are round-tripped through JSON so that they reach
// authz as they would from structpb.Struct.AsMap (numbers as float64).
func (f *File) Request(c *Case) (authz.Request, error) {
	id := c.Identity
	if id == nil {
		named, ok := f.Identities[c.Principal]
		if !ok {
			return authz.Request{}, fmt.Errorf("case %q: principal %q is not in identities", c.Name, c.Principal)
		}
		id = &named
	} else if c.Principal != "" {
		return authz.Request{}, fmt.Errorf("case %q: both principal and identity", c.Name)
	}
	ctx, err := jsonMap(c.Context)
	if err != nil {
		return authz.Request{}, fmt.Errorf("case %q: context: %w", c.Name, err)
	}
	attrs, err := jsonMap(c.Resource.Attributes)
	if err != nil {
		return authz.Request{}, fmt.Errorf("case %q: resource attributes: %w", c.Name, err)
	}
	return authz.Request{
		Identity: &fsmpb.Identity{
			Id: id.ID, Kind: id.Kind, Owner: id.Owner, Environment: id.Environment,
			Attributes: id.Attributes, Status: fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE,
		},
		Role:     c.Role,
		Action:   c.Action,
		Resource: authz.Resource{Type: c.Resource.Type, ID: c.Resource.ID, Attributes: attrs},
		Context:  ctx,
	}, nil
}

func jsonMap(m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// ResolveSet returns the set a case runs against: the case's own, else the
// file's. Named sets come from sets; inline text gets a name unique to the
// file and case ("inline:<file>#<case>") and inline is true.
func (f *File) ResolveSet(c *Case, sets map[string][]byte) (name string, text []byte, inline bool, err error) {
	named, cedar := c.PolicySet, c.Cedar
	if named == "" && cedar == "" {
		named, cedar = f.PolicySet, f.Cedar
	}
	switch {
	case named != "" && cedar != "":
		return "", nil, false, fmt.Errorf("case %q: both policy_set and cedar", c.Name)
	case named != "":
		text, ok := sets[named]
		if !ok {
			return "", nil, false, fmt.Errorf("case %q: no policy set named %q", c.Name, named)
		}
		return named, text, false, nil
	case cedar != "":
		return "inline:" + filepath.Base(f.Path) + "#" + c.Name, []byte(cedar), true, nil
	}
	return "", nil, false, fmt.Errorf("case %q: no policy_set or cedar", c.Name)
}

// Check returns "" when the outcome matches e, else what differs.
func Check(e Expect, d authz.Decision, err error) string {
	if e.Invalid != "" {
		switch {
		case err == nil:
			return fmt.Sprintf("want an invalid-request error containing %q, got decision %q", e.Invalid, d.Reason)
		case !errors.Is(err, authz.ErrInvalidRequest):
			return fmt.Sprintf("error %v does not wrap ErrInvalidRequest", err)
		case !strings.Contains(err.Error(), e.Invalid):
			return fmt.Sprintf("error %q does not contain %q", err, e.Invalid)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("unexpected error: %v", err)
	}
	var msgs []string
	if d.Allowed != e.Allowed {
		msgs = append(msgs, fmt.Sprintf("allowed = %v, want %v", d.Allowed, e.Allowed))
	}
	got := make([]string, 0, len(d.Determining))
	for _, p := range d.Determining {
		got = append(got, p.ID)
	}
	want := e.Determining
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		msgs = append(msgs, fmt.Sprintf("determining = %q, want %q", got, want))
	}
	if len(d.Errors) != len(e.Errors) {
		msgs = append(msgs, fmt.Sprintf("errors = %q, want %d matching %q", d.Errors, len(e.Errors), e.Errors))
	} else {
		for i := range e.Errors {
			if !strings.Contains(d.Errors[i], e.Errors[i]) {
				msgs = append(msgs, fmt.Sprintf("error %d = %q, want it to contain %q", i, d.Errors[i], e.Errors[i]))
			}
		}
	}
	if e.Reason != "" && d.Reason != e.Reason {
		msgs = append(msgs, fmt.Sprintf("reason = %q, want %q", d.Reason, e.Reason))
	}
	if len(msgs) > 0 {
		return strings.Join(msgs, "; ") + fmt.Sprintf(" (reason %q, errors %q)", d.Reason, d.Errors)
	}
	return ""
}
