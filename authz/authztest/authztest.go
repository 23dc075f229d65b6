// Package authztest runs data-driven decision cases (testdata/*.yaml) against
// authz. The same files serve every evaluator variant here and, through the
// exported loader, any transport that wants to replay them.
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
package authztest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

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

// Load reads every file matching pattern (e.g. "testdata/*.yaml"); unknown
// fields are errors so a typo cannot silently drop an expectation.
func Load(tb testing.TB, pattern string) []File {
	tb.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Fatalf("no case files match %s", pattern)
	}
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		var f File
		if err := dec.Decode(&f); err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		f.Path = p
		files = append(files, f)
	}
	return files
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

// Report tallies, per named policy set, what the cases exercised.
type Report struct {
	mu    sync.Mutex
	BySet map[string]*SetReport
}

// SetReport is what the cases exercised of one named set.
type SetReport struct {
	Allows, Denies int
	// Determining counts how often each policy id determined a decision.
	Determining map[string]int
}

func (r *Report) record(set string, d authz.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.BySet[set]
	if s == nil {
		s = &SetReport{Determining: map[string]int{}}
		r.BySet[set] = s
	}
	if d.Allowed {
		s.Allows++
	} else {
		s.Denies++
	}
	for _, p := range d.Determining {
		s.Determining[p.ID]++
	}
}

// Variant decides one request against one policy set: an evaluator, or a
// transport in front of one.
type Variant func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error)

// Variants returns the evaluator variants authz offers: a fresh Compile per
// request (indexed Decide), the same evaluating the whole set (DecideAll),
// and a shared Engine (which also exercises the cache under concurrency).
func Variants() map[string]Variant {
	engine := authz.NewEngine()
	return map[string]Variant{
		"compile": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := authz.Compile(name, 1, text)
			if err != nil {
				t.Fatalf("compile %s: %v", name, err)
			}
			return ps.Decide(req)
		},
		"whole-set": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := authz.Compile(name, 1, text)
			if err != nil {
				t.Fatalf("compile %s: %v", name, err)
			}
			return ps.DecideAll(req)
		},
		"engine": func(t *testing.T, name string, text []byte, req authz.Request) (authz.Decision, error) {
			ps, err := engine.Get(&fsmpb.PolicySet{Name: name, Version: 1, Cedar: string(text)})
			if err != nil {
				t.Fatalf("engine %s: %v", name, err)
			}
			return ps.Decide(req)
		},
	}
}

// Run runs every case of files, in parallel, under every variant, and
// returns once all are done with a report of what they exercised.
func Run(t *testing.T, files []File, sets map[string][]byte, variants map[string]Variant) *Report {
	t.Helper()
	report := &Report{BySet: map[string]*SetReport{}}
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	slices.Sort(names)
	// The group returns only when every parallel subtest has finished.
	t.Run("cases", func(t *testing.T) {
		for _, f := range files {
			t.Run(filepath.Base(f.Path), func(t *testing.T) {
				t.Parallel()
				seen := map[string]bool{}
				for _, c := range f.Cases {
					if c.Name == "" || seen[c.Name] {
						t.Errorf("case names must be unique and non-empty: %q", c.Name)
						continue
					}
					seen[c.Name] = true
					t.Run(c.Name, func(t *testing.T) {
						t.Parallel()
						setName, text, inline, err := f.ResolveSet(&c, sets)
						if err != nil {
							t.Fatal(err)
						}
						for _, vn := range names {
							// A fresh request per variant: nothing may leak between them.
							req, err := f.Request(&c)
							if err != nil {
								t.Fatal(err)
							}
							dec, err := variants[vn](t, setName, text, req)
							if msg := check(c.Expect, dec, err); msg != "" {
								t.Errorf("%s: %s", vn, msg)
							}
							if err == nil && vn == names[0] && !inline {
								report.record(setName, dec)
							}
						}
					})
				}
			})
		}
	})
	return report
}

// check returns "" when the outcome matches e, else what differs.
func check(e Expect, d authz.Decision, err error) string {
	if e.Invalid != "" {
		switch {
		case err == nil:
			return fmt.Sprintf("want an invalid-request error containing %q, got decision %+v", e.Invalid, d)
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
