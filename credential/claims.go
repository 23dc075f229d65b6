package credential

import (
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are the contents of a Writ credential. Times travel as JWT
// NumericDates, so they are whole seconds: Mint truncates, Verify returns
// second-aligned times.
type Claims struct {
	Issuer   string
	Subject  string // identity id
	Audience []string

	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time

	ID          string // jti: the lease id
	Role        string
	Owner       string
	Environment string
	Parent      string // parent lease id when the lease was delegated

	Scope         Scope
	PolicySet     string
	PolicyVersion uint64
}

// Scope is what the lease was issued for.
type Scope struct {
	Actions   []string
	Resources []ResourceRef
}

// ResourceRef names one resource in a scope.
type ResourceRef struct {
	Type string
	ID   string
}

// wireClaims is the JSON payload. Registered claims use their RFC 7519
// names; Writ's own are snake_case.
type wireClaims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.Audience     `json:"aud,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	Expiry    *jwt.NumericDate `json:"exp,omitempty"`
	ID        string           `json:"jti,omitempty"`

	Role          string     `json:"role,omitempty"`
	Owner         string     `json:"owner,omitempty"`
	Environment   string     `json:"environment,omitempty"`
	Parent        string     `json:"parent,omitempty"`
	Scope         *wireScope `json:"scope,omitempty"`
	PolicySet     string     `json:"policy_set,omitempty"`
	PolicyVersion uint64     `json:"policy_version,omitempty"`
}

type wireScope struct {
	Actions   []string       `json:"actions,omitempty"`
	Resources []wireResource `json:"resources,omitempty"`
}

type wireResource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func toWire(c *Claims) *wireClaims {
	w := &wireClaims{
		Issuer:        c.Issuer,
		Subject:       c.Subject,
		Audience:      jwt.Audience(c.Audience),
		IssuedAt:      jwt.NewNumericDate(c.IssuedAt),
		NotBefore:     jwt.NewNumericDate(c.NotBefore),
		Expiry:        jwt.NewNumericDate(c.Expiry),
		ID:            c.ID,
		Role:          c.Role,
		Owner:         c.Owner,
		Environment:   c.Environment,
		Parent:        c.Parent,
		PolicySet:     c.PolicySet,
		PolicyVersion: c.PolicyVersion,
	}
	if len(c.Scope.Actions) > 0 || len(c.Scope.Resources) > 0 {
		w.Scope = &wireScope{Actions: c.Scope.Actions}
		for _, r := range c.Scope.Resources {
			w.Scope.Resources = append(w.Scope.Resources, wireResource(r))
		}
	}
	return w
}

func fromWire(w *wireClaims) Claims {
	c := Claims{
		Issuer:        w.Issuer,
		Subject:       w.Subject,
		Audience:      []string(w.Audience),
		IssuedAt:      w.IssuedAt.Time(),
		NotBefore:     w.NotBefore.Time(),
		Expiry:        w.Expiry.Time(),
		ID:            w.ID,
		Role:          w.Role,
		Owner:         w.Owner,
		Environment:   w.Environment,
		Parent:        w.Parent,
		PolicySet:     w.PolicySet,
		PolicyVersion: w.PolicyVersion,
	}
	if w.Scope != nil {
		c.Scope.Actions = w.Scope.Actions
		for _, r := range w.Scope.Resources {
			c.Scope.Resources = append(c.Scope.Resources, ResourceRef(r))
		}
	}
	return c
}

// checkTime applies the time claims at now with leeway.
func (c *Claims) checkTime(now time.Time, leeway time.Duration) error {
	if !now.Before(c.Expiry.Add(leeway)) {
		return ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore) {
		return ErrNotYetValid
	}
	if !c.IssuedAt.IsZero() && now.Add(leeway).Before(c.IssuedAt) {
		return ErrNotYetValid
	}
	return nil
}
