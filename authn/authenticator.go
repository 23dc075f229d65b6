package authn

import (
	"crypto/sha256"
	"crypto/tls"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
	"github.com/writ-dev/writ/internal/clock"
)

// Config configures an Authenticator. Zero fields take the defaults.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// HTTPClient fetches JWKS URLs; default: a client with HTTPTimeout and
	// TLS 1.2 or later.
	HTTPClient *http.Client
	// HTTPTimeout bounds one JWKS fetch. Default 10s.
	HTTPTimeout time.Duration
	// JWKSRefresh is how often a JWKS file or URL is re-read when the auth
	// config does not say. Default 5m.
	JWKSRefresh time.Duration
	// JWKSMinRetry is the least time between two loads of one source after
	// a failure or a token with an unknown key id. Default 30s.
	JWKSMinRetry time.Duration
	// CacheSize bounds the verified-token and verified-chain caches
	// (entries each). Default 4096.
	CacheSize int
}

func (c *Config) defaults() {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 10 * time.Second
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		c.HTTPClient = &http.Client{Transport: tr, Timeout: c.HTTPTimeout}
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = 5 * time.Minute
	}
	if c.JWKSMinRetry == 0 {
		c.JWKSMinRetry = 30 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = 4096
	}
}

// Authenticator verifies JWT and mTLS proofs. It holds what is safe to
// cache: parsed key sets (refreshed from their file or URL), parsed trust
// bundles, tokens whose signature verified and chains that verified. Caches
// hold verification results only: expiry, audience, bound claims, SPIFFE
// patterns, the identity and every other check run on every login, so a
// cached entry never outlives a change of state or time. Safe for
// concurrent use.
type Authenticator struct {
	cfg     Config
	keys    *keyCache
	tokens  *boundedCache[verifiedToken]
	headers *boundedCache[jwtHeader]
	chains  *boundedCache[verifiedChain]
	pools   sync.Map // auth config name → *pool
}

// New returns an Authenticator.
func New(cfg Config) *Authenticator {
	cfg.defaults()
	return &Authenticator{
		cfg:     cfg,
		keys:    newKeyCache(cfg),
		tokens:  newBoundedCache[verifiedToken](cfg.CacheSize),
		headers: newBoundedCache[jwtHeader](cfg.CacheSize),
		chains:  newBoundedCache[verifiedChain](cfg.CacheSize),
	}
}

// boundedCache is a map that forgets everything when it is full: O(1), no
// bookkeeping per hit, and a full cache costs one round of re-verification.
type boundedCache[V any] struct {
	mu  sync.Mutex
	m   map[[32]byte]V
	max int
}

func newBoundedCache[V any](n int) *boundedCache[V] {
	return &boundedCache[V]{m: make(map[[32]byte]V), max: n}
}

func (c *boundedCache[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *boundedCache[V]) put(k [32]byte, v V) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}

// cacheKey hashes parts with separators that cannot occur inside them.
func cacheKey(parts ...[]byte) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		l := uint64(len(p))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(p)
	}
	return [32]byte(h.Sum(nil))
}

// loginRole is the start of every role-named login: bootstrapped, the role
// exists and allows the method.
func loginRole(st RoleState, name, method string) (*fsmpb.Role, error) {
	if !st.Bootstrapped() {
		return nil, ErrNotBootstrapped
	}
	if name == "" || len(name) > maxProofLen {
		return nil, ErrUnknownRole
	}
	role, ok := st.Role(name)
	if !ok || role == nil {
		return nil, ErrUnknownRole
	}
	for _, m := range role.GetAuthMethods() {
		if m == method {
			return role, nil
		}
	}
	return nil, ErrMethodNotAllowed
}

// roleConfigs returns the role's auth configs of one type, in its order.
func roleConfigs(st RoleState, role *fsmpb.Role, typ string) []*fsmpb.AuthConfig {
	var out []*fsmpb.AuthConfig
	for _, name := range role.GetAuthConfigs() {
		if c, ok := st.AuthConfig(name); ok && c.GetType() == typ {
			out = append(out, c)
		}
	}
	return out
}
