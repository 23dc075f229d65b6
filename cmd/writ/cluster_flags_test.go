package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
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

func TestGossipKeys(t *testing.T) {
	t.Parallel()
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567"))
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte(k1+"\n\n"+k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       clusterFlags
		env     string
		want    []int // key lengths, primary first
		wantErr string
	}{
		{name: "none"},
		{name: "flag", f: clusterFlags{gossipKey: k1}, want: []int{16}},
		{name: "file, primary first", f: clusterFlags{gossipKeyFile: file}, want: []int{16, 24}},
		{name: "env, comma-separated", env: k2 + "," + k1, want: []int{24, 16}},
		{name: "flag beats env", f: clusterFlags{gossipKey: k1}, env: k2, want: []int{16}},
		{name: "both flags", f: clusterFlags{gossipKey: k1, gossipKeyFile: file}, wantErr: "exclusive"},
		{name: "bad extra key", env: k1 + ",c2hvcnQ=", wantErr: "key is 5 bytes"},
		{name: "missing file", f: clusterFlags{gossipKeyFile: filepath.Join(dir, "nope")}, wantErr: "--gossip-key-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys, err := tc.f.keys(func(string) string { return tc.env })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, k := range keys {
				got = append(got, len(k))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("key lengths %v, want %v", got, tc.want)
			}
		})
	}
}
