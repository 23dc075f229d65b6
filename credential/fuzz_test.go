package credential_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/credential"
)

// FuzzVerify feeds arbitrary strings to Verify. Whatever the input, Verify
// must not panic, must fail with exactly one of the documented sentinels,
// and a token it accepts must be accepted identically from the cache and by
// a verifier without one. Seeds live in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	key := testKey(f, 1)
	keys := ring(key)
	good := mint(f, key, testClaims())
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("")
	f.Add("a.b.c")

	now := t0.Add(time.Minute)
	sentinels := []error{credential.ErrMalformed, credential.ErrUnknownKey, credential.ErrBadSignature, credential.ErrExpired, credential.ErrNotYetValid}
	f.Fuzz(func(t *testing.T, token string) {
		v := credential.NewVerifier(credential.VerifierConfig{CacheSize: 4})
		c, err := v.Verify(token, keys, now)
		if err != nil {
			if c != nil {
				t.Fatalf("claims with error %v", err)
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v matches %d sentinels", err, n)
			}
			return
		}
		if c.Expiry.IsZero() {
			t.Fatal("accepted a token without expiry")
		}
		again, err := v.Verify(token, keys, now)
		if err != nil {
			t.Fatalf("cached verify: %v", err)
		}
		fresh, err := credential.NewVerifier(credential.VerifierConfig{CacheSize: -1}).Verify(token, keys, now)
		if err != nil {
			t.Fatalf("uncached verify: %v", err)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("cached claims differ:\n%s", diff)
		}
		if diff := cmp.Diff(c, fresh); diff != "" {
			t.Fatalf("uncached claims differ:\n%s", diff)
		}
	})
}
