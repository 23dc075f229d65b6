package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// certReloader serves the API certificate from files and re-reads them when
// they change (checked at most every reloadEvery), so a rotated certificate
// (SPIRE rotates X.509-SVIDs hourly) is picked up without a restart. A
// rotation that fails to load keeps the previous certificate.
type certReloader struct {
	certFile, keyFile string
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	modCert   time.Time
	modKey    time.Time
	lastCheck time.Time
}

const reloadEvery = 10 * time.Second

func newCertReloader(certFile, keyFile string, now func() time.Time) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, now: now}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return err
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.modCert, r.modKey = &cert, ci.ModTime(), ki.ModTime()
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= reloadEvery {
		r.lastCheck = now
		ci, err1 := os.Stat(r.certFile)
		ki, err2 := os.Stat(r.keyFile)
		if err1 == nil && err2 == nil && (!ci.ModTime().Equal(r.modCert) || !ki.ModTime().Equal(r.modKey)) {
			_ = r.load() // on failure keep serving the previous certificate
		}
	}
	return r.cert, nil
}

// serverTLS builds the API's TLS settings from --tls-cert and --tls-key:
// TLS 1.2 or later, and a client certificate requested but not required or
// judged at the handshake (mTLS logins verify it against the role's auth
// configs; other calls need none).
func serverTLS(certFile, keyFile string, now func() time.Time) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	r, err := newCertReloader(certFile, keyFile, now)
	if err != nil {
		return nil, usagef("--tls-cert/--tls-key: %v", err)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.getCertificate,
		ClientAuth:     tls.RequestClientCert,
	}, nil
}

// peerTLS builds what verifies other nodes' API certificates from
// --tls-peer-ca (default: the system roots).
func peerTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, usagef("--tls-peer-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("--tls-peer-ca %s holds no PEM certificate", caFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// parseEnvironments splits --environments.
func parseEnvironments(list []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, e := range list {
		e = strings.TrimSpace(e)
		if e == "" || strings.ContainsAny(e, " \t/") {
			return nil, fmt.Errorf("environment %q: want a name without spaces or slashes", e)
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}
