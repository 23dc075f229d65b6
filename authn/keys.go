package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Key loading limits.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 64
	minRSABits   = 2048
)

// keySet is one parsed JWKS: only public signing keys Writ accepts.
type keySet struct {
	keys   []jose.JSONWebKey
	gen    uint64 // unique per load: part of the verified-token cache key
	loaded time.Time
}

type keyEntry struct {
	// cfg is the config record the entry was last used with: records from
	// the replicated state are immutable, so the same pointer means the
	// same source and sourceOf (a hash of an inline JWKS) can be skipped.
	cfg        *fsmpb.AuthConfig
	source     string
	set        *keySet // last known good
	lastTry    time.Time
	err        error // of the last load, if it failed
	refreshing bool
}

// keyCache holds each JWT auth config's parsed keys. Inline keys are parsed
// once per config content; a JWKS file or URL is loaded on first use, then
// re-read every refresh interval in the background while logins keep using
// the last known good set, and re-read at once (at most every minRetry) when
// a token names a key id the set lacks (key rotation). A failed load never
// discards a good set. Safe for concurrent use.
type keyCache struct {
	cfg     Config
	gen     atomic.Uint64
	flight  singleflight.Group
	mu      sync.Mutex
	entries map[string]*keyEntry // by auth config name
}

func newKeyCache(cfg Config) *keyCache {
	return &keyCache{cfg: cfg, entries: map[string]*keyEntry{}}
}

// sourceOf identifies where a config's keys come from; a change of source
// (a new inline JWKS, another file or URL) discards the cached set.
func sourceOf(c *fsmpb.AuthConfig) string {
	switch {
	case c.GetJwks() != "":
		sum := sha256.Sum256([]byte(c.GetJwks()))
		return "inline:" + hex.EncodeToString(sum[:])
	case c.GetJwksFile() != "":
		return "file:" + c.GetJwksFile()
	}
	return "url:" + c.GetJwksUrl()
}

func (k *keyCache) refreshEvery(c *fsmpb.AuthConfig) time.Duration {
	if d := time.Duration(c.GetJwksRefreshNanos()); d > 0 {
		return d
	}
	return k.cfg.JWKSRefresh
}

// keys returns the config's current key set, loading it if needed.
func (k *keyCache) keys(ctx context.Context, c *fsmpb.AuthConfig) (*keySet, error) {
	k.mu.Lock()
	e := k.entries[c.GetName()]
	if e != nil && e.cfg == c && e.set != nil && c.GetJwks() != "" {
		set := e.set
		k.mu.Unlock()
		return set, nil
	}
	k.mu.Unlock()
	src := sourceOf(c)
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	e = k.entries[c.GetName()]
	if e != nil && e.source == src && e.set != nil {
		e.cfg = c
		set := e.set
		if c.GetJwks() == "" && !e.refreshing && now.Sub(set.loaded) >= k.refreshEvery(c) && now.Sub(e.lastTry) >= k.cfg.JWKSMinRetry {
			e.refreshing = true
			go k.background(c, src)
		}
		k.mu.Unlock()
		return set, nil
	}
	if e != nil && e.source == src && e.err != nil && now.Sub(e.lastTry) < k.cfg.JWKSMinRetry {
		err := e.err
		k.mu.Unlock()
		return nil, err
	}
	k.mu.Unlock()
	return k.load(ctx, c, src)
}

// refetch reloads a file or URL source at once when the last attempt is
// older than minRetry (a token names an unknown key id: maybe a rotation),
// and returns the newest set either way.
func (k *keyCache) refetch(ctx context.Context, c *fsmpb.AuthConfig) (*keySet, error) {
	src := sourceOf(c)
	k.mu.Lock()
	e := k.entries[c.GetName()]
	stale := c.GetJwks() == "" && e != nil && e.source == src && k.cfg.Clock.Now().Sub(e.lastTry) >= k.cfg.JWKSMinRetry
	var set *keySet
	if e != nil && e.source == src {
		set = e.set
	}
	k.mu.Unlock()
	if !stale {
		if set == nil {
			return nil, ErrKeysUnavailable
		}
		return set, nil
	}
	return k.load(ctx, c, src)
}

func (k *keyCache) background(c *fsmpb.AuthConfig, src string) {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.HTTPTimeout)
	defer cancel()
	_, _ = k.load(ctx, c, src)
}

// load reads and parses the keys once for all concurrent callers, and
// records the outcome: a good set replaces the old one, a failure keeps it.
func (k *keyCache) load(ctx context.Context, c *fsmpb.AuthConfig, src string) (*keySet, error) {
	v, err, _ := k.flight.Do(c.GetName()+"\x00"+src, func() (any, error) {
		set, err := k.fetch(ctx, c)
		now := k.cfg.Clock.Now()
		k.mu.Lock()
		defer k.mu.Unlock()
		e := k.entries[c.GetName()]
		if e == nil || e.source != src {
			e = &keyEntry{source: src}
			k.entries[c.GetName()] = e
		}
		e.lastTry, e.refreshing = now, false
		if err != nil {
			e.err = fmt.Errorf("%w: auth config %q: %v", ErrKeysUnavailable, c.GetName(), err)
			if e.set != nil {
				k.cfg.Logger.Warn("jwks refresh failed; keeping the last known good keys",
					"auth_config", c.GetName(), "source", src, "loaded", e.set.loaded, "err", err)
				return e.set, nil
			}
			k.cfg.Logger.Warn("jwks load failed", "auth_config", c.GetName(), "source", src, "err", err)
			return nil, e.err
		}
		set.gen, set.loaded = k.gen.Add(1), now
		e.set, e.err = set, nil
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*keySet), nil
}

func (k *keyCache) fetch(ctx context.Context, c *fsmpb.AuthConfig) (*keySet, error) {
	var body []byte
	switch {
	case c.GetJwks() != "":
		body = []byte(c.GetJwks())
	case c.GetJwksFile() != "":
		f, err := os.Open(c.GetJwksFile())
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if body, err = io.ReadAll(io.LimitReader(f, maxJWKSBytes+1)); err != nil {
			return nil, err
		}
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.GetJwksUrl(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json, application/jwk-set+json")
		resp, err := k.cfg.HTTPClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", c.GetJwksUrl(), resp.Status)
		}
		if body, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1)); err != nil {
			return nil, err
		}
	}
	return parseJWKS(body)
}

// parseJWKS parses a JSON Web Key Set and keeps the public signing keys Writ
// accepts: RSA of at least 2048 bits, ECDSA P-256 and Ed25519, without
// `use: enc`. Private keys are reduced to their public half. It fails when
// nothing usable is left, and never panics, whatever the bytes (FuzzParseJWKS).
func parseJWKS(b []byte) (*keySet, error) {
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks is larger than %d bytes", maxJWKSBytes)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("jwks: %v", err)
	}
	if len(raw.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("jwks holds %d keys; at most %d", len(raw.Keys), maxJWKSKeys)
	}
	set := &keySet{}
	var skipped []error
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			// One key in a format we do not know (a future kty) must not
			// take the whole set down.
			skipped = append(skipped, fmt.Errorf("key %d: %v", i, err))
			continue
		}
		if k.Use == "enc" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if err := usableKey(k.Key); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (%s): %v", i, k.KeyID, err))
			continue
		}
		set.keys = append(set.keys, k)
	}
	if len(set.keys) == 0 {
		return nil, errors.Join(append([]error{errors.New("jwks holds no usable signing key")}, skipped...)...)
	}
	return set, nil
}

func usableKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA curve %s; want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key type %T is not accepted", key)
	}
	return nil
}

// algFits reports whether key can verify alg: the algorithm fixes the key
// type, so a token cannot pick a verification it was not made for
// (algorithm confusion).
func algFits(alg string, k jose.JSONWebKey) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch alg {
	case string(jose.RS256):
		_, ok := k.Key.(*rsa.PublicKey)
		return ok
	case string(jose.ES256):
		_, ok := k.Key.(*ecdsa.PublicKey)
		return ok
	case string(jose.EdDSA):
		_, ok := k.Key.(ed25519.PublicKey)
		return ok
	}
	return false
}
