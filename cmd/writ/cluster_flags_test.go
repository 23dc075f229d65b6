package main

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestKeygen(t *testing.T) {
	t.Parallel()
	a, b := runCLI(t, nil, "", "keygen"), runCLI(t, nil, "", "keygen")
	for _, res := range []result{a, b} {
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(res.stdout))
		if err != nil || len(key) != 32 {
			t.Fatalf("keygen printed %q: %d bytes, %v", res.stdout, len(key), err)
		}
	}
	if a.stdout == b.stdout {
		t.Fatal("two keygen runs printed the same key")
	}
}
