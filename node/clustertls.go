package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
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

// clusterTLSConfigs loads the node certificate and CA and returns the
// server-side and client-side configs. Both require the peer to present a
// certificate chaining to the cluster CA (TLS 1.3 only).
func (c *ClusterTLS) configs() (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: node certificate: %v", ErrClusterTLS, err)
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: cluster CA: %v", ErrClusterTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%w: cluster CA %s holds no PEM certificate", ErrClusterTLS, c.CAFile)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
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
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Verification is ours (VerifyConnection): chain to the cluster CA,
		// whatever address the peer dialled from.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Nodes dial each other by IP or container name; hostname
		// verification is replaced by the CA (and optional name) check.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection checks the chain
		VerifyConnection:   verify,
	}
	return server, client, nil
}
