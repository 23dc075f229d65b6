package credential_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/credential"
)

func BenchmarkMint(b *testing.B) {
	key := testKey(b, 1)
	c := testClaims()
	b.Run("Mint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tok, err := credential.Mint(key, c); err != nil || tok == "" {
				b.Fatal(err)
			}
		}
	})
	b.Run("Signer", func(b *testing.B) {
		s, err := credential.NewSigner(key)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if tok, err := s.Mint(c); err != nil || tok == "" {
				b.Fatal(err)
			}
		}
	})
	// The floor: the signature alone over the same signing input.
	b.Run("ed25519.Sign", func(b *testing.B) {
		tok, err := credential.Mint(key, c)
		if err != nil {
			b.Fatal(err)
		}
		input := []byte(tok[:strings.LastIndexByte(tok, '.')])
		priv := ed25519.NewKeyFromSeed(key.GetEd25519Seed())
		b.ReportAllocs()
		for b.Loop() {
			ed25519.Sign(priv, input)
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	key := testKey(b, 1)
	keys := ring(key)
	tok := mint(b, key, testClaims())
	v := credential.NewVerifier(credential.VerifierConfig{CacheSize: -1})
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if c, err := v.Verify(tok, keys, now); err != nil || c.ID == "" {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	key := testKey(b, 1)
	keys := ring(key)
	s, err := credential.NewSigner(key)
	if err != nil {
		b.Fatal(err)
	}
	// Many live credentials, as on a busy node, not one hot token.
	toks := make([]string, 4096)
	for i := range toks {
		c := testClaims()
		c.ID = fmt.Sprintf("l_%016x", i)
		if toks[i], err = s.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
	v := credential.NewVerifier(credential.VerifierConfig{})
	now := t0.Add(time.Minute)
	for _, tok := range toks {
		if _, err := v.Verify(tok, keys, now); err != nil {
			b.Fatal(err)
		}
	}
	checks := v.Stats().SignatureChecks
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if c, err := v.Verify(toks[i%len(toks)], keys, now); err != nil || c.ID == "" {
			b.Fatal(err)
		}
		i++
	}
	if v.Stats().SignatureChecks != checks {
		b.Fatal("cached benchmark verified signatures")
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	key := testKey(b, 1)
	keys := ring(key)
	tok := mint(b, key, testClaims())
	v := credential.NewVerifier(credential.VerifierConfig{})
	now := t0.Add(time.Minute)
	if _, err := v.Verify(tok, keys, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(tok, keys, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
