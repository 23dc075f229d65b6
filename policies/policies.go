// Package policies holds Writ's Cedar schema, the example policy library and
// the fixtures `writ dev` starts with, all embedded in the binary.
//
// Everything here is read-only data: the functions parse the embedded files
// on each call and return fresh values the caller may keep or modify.
package policies

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Schema is Writ's Cedar schema in the human-readable schema format.
//
//go:embed writ.cedarschema
var Schema []byte

//go:embed sets/*.cedar
var setsFS embed.FS

//go:embed dev.yaml
var devYAML []byte

// Set is one example policy set. Name is the file name without ".cedar";
// example sets are named after the environment they govern.
type Set struct {
	Name  string
	Cedar []byte
}

// Sets returns every embedded example set (sets/*.cedar), sorted by name.
func Sets() ([]Set, error) {
	entries, err := fs.ReadDir(setsFS, "sets")
	if err != nil {
		return nil, fmt.Errorf("policies: read sets: %w", err)
	}
	var out []Set
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".cedar")
		if e.IsDir() || !ok {
			continue
		}
		b, err := setsFS.ReadFile(path.Join("sets", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("policies: read set %s: %w", name, err)
		}
		out = append(out, Set{Name: name, Cedar: b})
	}
	slices.SortFunc(out, func(a, b Set) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// kinds lists the identity kinds fixtures may use (fsmpb.Identity.Kind);
// authz.PrincipalType maps each to its Cedar entity type.
var kinds = []string{"workload", "ci_job", "agent", "service_account"}

// Identity is an example identity for `writ dev`.
type Identity struct {
	ID, Kind, Owner, Environment string
	Attributes                   map[string]string
	Description                  string
}

// Role is an example role for `writ dev`.
type Role struct {
	Name, Environment, Identity string
	AuthMethods                 []string
	DefaultTTL, MaxTTL          time.Duration
	MaxRenewals, MaxLiveLeases  uint32
	MaxDelegationDepth          uint32
}

// Fixtures are the identities and roles `writ dev` creates.
type Fixtures struct {
	Identities []Identity
	Roles      []Role
}

// ErrInvalidFixtures is wrapped by every DevFixtures validation error.
var ErrInvalidFixtures = errors.New("policies: invalid fixtures")

// DevFixtures parses the embedded dev.yaml and checks it is consistent:
// ids and names are unique and non-empty, kinds are known, TTLs parse and
// default ≤ max, every role's identity exists and lives in the role's
// environment.
func DevFixtures() (*Fixtures, error) {
	return parseFixtures(devYAML)
}

type fixturesYAML struct {
	Identities []struct {
		ID          string            `yaml:"id"`
		Kind        string            `yaml:"kind"`
		Owner       string            `yaml:"owner"`
		Environment string            `yaml:"environment"`
		Attributes  map[string]string `yaml:"attributes"`
		Description string            `yaml:"description"`
	} `yaml:"identities"`
	Roles []struct {
		Name          string   `yaml:"name"`
		Environment   string   `yaml:"environment"`
		AuthMethods   []string `yaml:"auth_methods"`
		Identity      string   `yaml:"identity"`
		DefaultTTL    string   `yaml:"default_ttl"`
		MaxTTL        string   `yaml:"max_ttl"`
		MaxRenewals   uint32   `yaml:"max_renewals"`
		MaxLiveLeases uint32   `yaml:"max_live_leases"`
		MaxDelegation uint32   `yaml:"max_delegation_depth"`
	} `yaml:"roles"`
}

func parseFixtures(b []byte) (*Fixtures, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var in fixturesYAML
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: dev.yaml: %w", ErrInvalidFixtures, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: dev.yaml: %s", ErrInvalidFixtures, fmt.Sprintf(format, args...))
	}
	out := &Fixtures{}
	envOf := make(map[string]string, len(in.Identities)) // identity id → environment
	for i, y := range in.Identities {
		switch {
		case y.ID == "":
			return nil, bad("identity #%d has no id", i)
		case envOf[y.ID] != "":
			return nil, bad("identity %q is defined twice", y.ID)
		case !slices.Contains(kinds, y.Kind):
			return nil, bad("identity %q: kind %q is not one of %v", y.ID, y.Kind, kinds)
		case y.Owner == "":
			return nil, bad("identity %q has no owner", y.ID)
		case y.Environment == "":
			return nil, bad("identity %q has no environment", y.ID)
		}
		out.Identities = append(out.Identities, Identity{
			ID: y.ID, Kind: y.Kind, Owner: y.Owner, Environment: y.Environment,
			Attributes: y.Attributes, Description: y.Description,
		})
		envOf[y.ID] = y.Environment
	}
	names := make(map[string]bool, len(in.Roles))
	for i, y := range in.Roles {
		if y.Name == "" {
			return nil, bad("role #%d has no name", i)
		}
		if names[y.Name] {
			return nil, bad("role %q is defined twice", y.Name)
		}
		names[y.Name] = true
		env, ok := envOf[y.Identity]
		if !ok {
			return nil, bad("role %q: identity %q is not defined", y.Name, y.Identity)
		}
		if env != y.Environment {
			return nil, bad("role %q is in environment %q but its identity %q is in %q", y.Name, y.Environment, y.Identity, env)
		}
		if len(y.AuthMethods) == 0 {
			return nil, bad("role %q has no auth_methods", y.Name)
		}
		def, err := time.ParseDuration(y.DefaultTTL)
		if err != nil {
			return nil, bad("role %q: default_ttl: %v", y.Name, err)
		}
		maxTTL, err := time.ParseDuration(y.MaxTTL)
		if err != nil {
			return nil, bad("role %q: max_ttl: %v", y.Name, err)
		}
		if def <= 0 || def > maxTTL {
			return nil, bad("role %q: need 0 < default_ttl (%s) ≤ max_ttl (%s)", y.Name, def, maxTTL)
		}
		out.Roles = append(out.Roles, Role{
			Name: y.Name, Environment: y.Environment, Identity: y.Identity,
			AuthMethods: y.AuthMethods, DefaultTTL: def, MaxTTL: maxTTL,
			MaxRenewals: y.MaxRenewals, MaxLiveLeases: y.MaxLiveLeases,
			MaxDelegationDepth: y.MaxDelegation,
		})
	}
	return out, nil
}
