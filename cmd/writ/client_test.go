package main

import (
	"net/http"
	"strings"
	"testing"
)

func TestNormalizeAddr(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: "http://127.0.0.1:7400", want: "http://127.0.0.1:7400"},
		{in: "127.0.0.1:7400", want: "http://127.0.0.1:7400"},
		{in: " localhost:7400 ", want: "http://localhost:7400"},
		{in: "writ.internal", want: "http://writ.internal"},
		{in: ":7400", want: "http://127.0.0.1:7400"},
		{in: "[::1]:7400", want: "http://[::1]:7400"},
		{in: "https://writ.example.com/", want: "https://writ.example.com"},
		{in: "https://proxy.example.com/writ/", want: "https://proxy.example.com/writ"},
		{in: "HTTP://127.0.0.1:7400", want: "http://127.0.0.1:7400"},
		{in: "", err: "address is empty"},
		{in: "ftp://host:21", err: `scheme "ftp" is not supported`},
		{in: "127.0.0.1:99999", err: "bad port"},
		{in: "127.0.0.1:port", err: "invalid port"},
		{in: "http://", err: "has no host"},
		{in: "http://:7400", err: "has no host"},
		{in: "http://u:p@host:1", err: "without user, query or fragment"},
		{in: "host:1/?x=1", err: "without user, query or fragment"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeAddr(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseProtocol(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]protocol{"connect": protoConnect, "GRPC": protoGRPC, "grpcweb": protoGRPCWeb, "grpc-web": protoGRPCWeb} {
		if got, err := parseProtocol(in); err != nil || got != want {
			t.Errorf("parseProtocol(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := parseProtocol("http"); err == nil || !strings.Contains(err.Error(), "want connect, grpc or grpcweb") {
		t.Errorf("err = %v", err)
	}
}

func TestNewHTTPClientH2C(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p   protocol
		url string
		h2c bool
	}{
		{p: protoGRPC, url: "http://127.0.0.1:7400", h2c: true},
		{p: protoGRPC, url: "https://writ.example.com", h2c: false},
		{p: protoConnect, url: "http://127.0.0.1:7400", h2c: false},
		{p: protoGRPCWeb, url: "http://127.0.0.1:7400", h2c: false},
	}
	for _, tc := range tests {
		tr := newHTTPClient(tc.p, tc.url, nil).Transport.(*http.Transport)
		got := tr.Protocols != nil && tr.Protocols.UnencryptedHTTP2()
		if got != tc.h2c {
			t.Errorf("%s %s: h2c = %v, want %v", tc.p, tc.url, got, tc.h2c)
		}
	}
}
