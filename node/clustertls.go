package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// ClusterTLS names the files that put cluster traffic (Raft and node RPC on
// the cluster port) under mutual TLS. Every node presents CertFile/KeyFile
// and accepts a peer only if the peer's certificate chains to CAFile; with
// ServerName set, the peer's certificate must also carry that DNS name.
// The CA should be dedicated to the cluster: any certificate it signs is a
// cluster member.
type ClusterTLS struct {
	CertFile, KeyFile, CAFile string
	// ServerName, if set, must appear among the DNS names of every peer's
	// certificate (both directions), so a certificate the same CA issued
	// for something else cannot join.
	ServerName string
}

func (c *ClusterTLS) enabled() bool {
	return c != nil && (c.CertFile != "" || c.KeyFile != "" || c.CAFile != "")
}

func (c *ClusterTLS) validate() error {
	if !c.enabled() {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return errors.New("cluster TLS needs a certificate, its key and the cluster CA")
	}
	return nil
}

// tlsReloadInterval is how often the certificate files are checked for
// changes (by modification time and size) during handshakes.
const tlsReloadInterval = 5 * time.Second

// tlsFiles holds the loaded node certificate and CA pool and reloads them
// when the files change, so certificates rotate without a restart. A
// reload that fails (a half-written file) keeps the previous material and
// is logged. Safe for concurrent use.
type tlsFiles struct {
	c        ClusterTLS
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamp   string
	checked time.Time
}

func (f *tlsFiles) fileStamp() string {
	var b strings.Builder
	for _, p := range []string{f.c.CertFile, f.c.KeyFile, f.c.CAFile} {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return b.String()
}

func (f *tlsFiles) load() error {
	cert, err := tls.LoadX509KeyPair(f.c.CertFile, f.c.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: node certificate: %v", ErrClusterTLS, err)
	}
	caPEM, err := os.ReadFile(f.c.CAFile)
	if err != nil {
		return fmt.Errorf("%w: cluster CA: %v", ErrClusterTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%w: cluster CA %s holds no PEM certificate", ErrClusterTLS, f.c.CAFile)
	}
	f.cert, f.pool = &cert, pool
	return nil
}

// current returns the certificate and CA pool, reloading them first if
// the files changed since the last check.
func (f *tlsFiles) current() (*tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= f.interval {
		f.checked = time.Now()
		if stamp := f.fileStamp(); stamp != f.stamp {
			if err := f.load(); err != nil {
				f.log.Error("cluster TLS files changed but do not load; keeping the previous ones", "err", err)
			} else {
				f.stamp = stamp
				f.log.Info("cluster TLS certificate reloaded", "cert", f.c.CertFile)
			}
		}
	}
	return f.cert, f.pool
}

// configs loads the node certificate and CA and returns the server-side
// and client-side configs. Both require the peer to present a certificate
// chaining to the cluster CA (TLS 1.3 only); both pick up changed files
// within tlsReloadInterval.
func (c *ClusterTLS) configs(log *slog.Logger) (server, client *tls.Config, err error) {
	return c.configsEvery(log, tlsReloadInterval)
}

func (c *ClusterTLS) configsEvery(log *slog.Logger, interval time.Duration) (server, client *tls.Config, err error) {
	files := &tlsFiles{c: *c, log: log, interval: interval}
	files.stamp = files.fileStamp()
	if err := files.load(); err != nil {
		return nil, nil, err
	}
	files.checked = time.Now()
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
		_, pool := files.current()
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}); err != nil {
			return fmt.Errorf("peer certificate not issued by the cluster CA: %w", err)
		}
		if c.ServerName != "" && !slices.Contains(leaf.DNSNames, c.ServerName) {
			return fmt.Errorf("peer certificate does not name %q", c.ServerName)
		}
		return nil
	}
	server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, _ := files.current()
			return cert, nil
		},
		// Verification is ours (VerifyConnection): chain to the cluster CA,
		// whatever address the peer dialled from.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
	}
	client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := files.current()
			return cert, nil
		},
		// Nodes dial each other by IP or container name; hostname
		// verification is replaced by the CA (and optional name) check.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection checks the chain
		VerifyConnection:   verify,
	}
	return server, client, nil
}
