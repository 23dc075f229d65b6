package credential

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// MaxTokenSize bounds the tokens Verify accepts; a Writ credential is a few
// hundred bytes. Longer input is ErrMalformed before any parsing.
const MaxTokenSize = 8 << 10

// DefaultCacheSize is the number of verified tokens a Verifier keeps when
// VerifierConfig.CacheSize is zero.
const DefaultCacheSize = 65536

// maxKeys bounds the per-kid public key cache; a keyring holds a handful.
const maxKeys = 256

// KeySource resolves a kid to a signing key record. The fsm read view
// satisfies it. Implementations must be safe for concurrent use.
type KeySource interface {
	SigningKey(kid string) (*fsmpb.SigningKey, bool)
}

// VerifierConfig configures a Verifier. The zero value is usable.
type VerifierConfig struct {
	// CacheSize is how many verified tokens to keep. 0 means
	// DefaultCacheSize; a negative value disables the cache.
	CacheSize int
	// Leeway tolerates clock skew on exp, nbf and iat. Default 0: the nodes
	// that mint and verify share the leader's notion of time closely enough.
	Leeway time.Duration
}

// Verifier checks credentials. It is safe for concurrent use.
//
// Tokens whose signature verified are cached by the SHA-256 of the whole
// token string, so a repeated credential costs a hash and a map lookup
// instead of an Ed25519 verification. A cache hit still re-checks that the
// kid resolves to the same key in the caller's KeySource (a removed or
// replaced key invalidates its tokens at once) and re-checks exp, nbf and
// iat against now. Lease status is not the Verifier's business: the caller
// checks the lease named by Claims.ID on every call.
type Verifier struct {
	leeway time.Duration
	tokens *tokenCache // nil when disabled
	keys   keyCache

	hits   atomic.Uint64
	checks atomic.Uint64
}

// NewVerifier returns a Verifier for cfg, applying defaults.
func NewVerifier(cfg VerifierConfig) *Verifier {
	v := &Verifier{leeway: max(cfg.Leeway, 0), keys: keyCache{m: make(map[string]*publicKey)}}
	switch {
	case cfg.CacheSize == 0:
		v.tokens = newTokenCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		v.tokens = newTokenCache(cfg.CacheSize)
	}
	return v
}

// Stats counts what a Verifier has done since it was made.
type Stats struct {
	CacheHits       uint64 // calls answered from the cache
	SignatureChecks uint64 // Ed25519 verifications performed
}

// Stats returns the Verifier's counters.
func (v *Verifier) Stats() Stats {
	return Stats{CacheHits: v.hits.Load(), SignatureChecks: v.checks.Load()}
}

// Verify checks token's signature against the key its kid names in keys,
// then its time claims at now. The error wraps one of ErrMalformed,
// ErrUnknownKey, ErrBadSignature, ErrExpired or ErrNotYetValid. The returned
// Claims are the caller's own copy; its slices are shared with the cache
// and must not be modified.
func (v *Verifier) Verify(token string, keys KeySource, now time.Time) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), MaxTokenSize)
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: no key source", ErrUnknownKey)
	}
	var sum [sha256.Size]byte
	if v.tokens != nil {
		sum = hashToken(token)
		if e := v.tokens.get(sum); e != nil {
			if e.key.current(keys) {
				v.hits.Add(1)
				return e.result(now, v.leeway)
			}
			// The kid was removed or now names another key: forget the
			// entry and verify from scratch, which reports why it fails.
			v.tokens.remove(sum)
		}
	}
	e, err := v.verify(token, keys)
	if err != nil {
		return nil, err
	}
	if v.tokens != nil && now.Before(e.claims.Expiry.Add(v.leeway)) {
		v.tokens.put(sum, e)
	}
	return e.result(now, v.leeway)
}

// verify parses token and checks its signature; it does not look at time.
func (v *Verifier) verify(token string, keys KeySource) (*entry, error) {
	// ParseSignedCompact accepts only the compact form and only the listed
	// algorithm, so "none", HS256 and friends fail here.
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{Alg})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrMalformed)
	}
	kid := jws.Signatures[0].Header.KeyID
	if kid == "" {
		return nil, fmt.Errorf("%w: no kid", ErrMalformed)
	}
	rec, ok := keys.SigningKey(kid)
	if !ok || rec == nil {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	pk, err := v.keys.get(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownKey, err)
	}
	v.checks.Add(1)
	payload, err := jws.Verify(pk.pub)
	if err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return nil, fmt.Errorf("%w: kid %q", ErrBadSignature, kid)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// The payload is parsed only once its signature verified, i.e. only
	// bytes a Writ node produced, so the standard library's decoder (faster
	// than go-jose's, more lenient about key case) is safe here.
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if w.Expiry == nil {
		return nil, fmt.Errorf("%w: no exp", ErrMalformed)
	}
	return &entry{claims: fromWire(&w), key: pk}, nil
}

// entry is a token whose signature verified under key.
type entry struct {
	claims Claims
	key    *publicKey
}

func (e *entry) result(now time.Time, leeway time.Duration) (*Claims, error) {
	if err := e.claims.checkTime(now, leeway); err != nil {
		return nil, err
	}
	c := e.claims
	return &c, nil
}

// publicKey is an expanded verification key together with the seed it came
// from, so a cached token can be checked against the current keyring with a
// 32-byte comparison instead of a scalar multiplication.
type publicKey struct {
	kid  string
	seed [ed25519.SeedSize]byte
	pub  ed25519.PublicKey
}

// current reports whether keys still maps p.kid to the same seed.
func (p *publicKey) current(keys KeySource) bool {
	rec, ok := keys.SigningKey(p.kid)
	return ok && bytes.Equal(rec.GetEd25519Seed(), p.seed[:])
}

// keyCache memoises seed expansion per kid.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]*publicKey
}

func (c *keyCache) get(rec *fsmpb.SigningKey) (*publicKey, error) {
	c.mu.RLock()
	p := c.m[rec.GetKid()]
	c.mu.RUnlock()
	if p != nil && bytes.Equal(p.seed[:], rec.GetEd25519Seed()) {
		return p, nil
	}
	priv, err := privateKey(rec)
	if err != nil {
		return nil, err
	}
	p = &publicKey{kid: rec.GetKid(), pub: priv.Public().(ed25519.PublicKey)}
	copy(p.seed[:], rec.GetEd25519Seed())
	c.mu.Lock()
	if len(c.m) >= maxKeys {
		clear(c.m)
	}
	c.m[p.kid] = p
	c.mu.Unlock()
	return p, nil
}

// hashToken is SHA-256 of token without copying it to the heap first (the
// conversion would cost an allocation as large as the token on every call).
// The hash only reads its input.
func hashToken(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}
