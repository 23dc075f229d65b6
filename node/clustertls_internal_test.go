package node

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake between the two configs over loopback and
// returns the client's and the server's errors (a TLS 1.3 client learns
// that the server refused its certificate only when it reads).
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		b, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer b.Close()
		_ = b.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(b, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- err
		_ = s.Close()
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_ = a.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(a, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	_ = c.Close()
	return clientErr, <-done
}

// TestClusterTLSReload: the configs pick up rotated certificate files (a
// new CA and node certificate) without a restart, a half-written file is
// ignored, and once rotated a peer still holding the old CA's certificate
// is refused.
func TestClusterTLSReload(t *testing.T) {
	dir := t.TempDir()
	oldCA := newTestCA(t, "old CA")
	files := oldCA.Issue(t, dir, "n1")
	serverCfg, clientCfg, err := files.configsEvery(slog.New(slog.DiscardHandler), 0)
	if err != nil {
		t.Fatal(err)
	}
	peerOld := oldCA.Issue(t, filepath.Join(dir, "peer-old"), "peer")
	_, peerOldClient, err := peerOld.configsEvery(slog.New(slog.DiscardHandler), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(t, serverCfg, peerOldClient); cerr != nil || serr != nil {
		t.Fatalf("same CA: client %v, server %v", cerr, serr)
	}

	// A half-written key file is ignored: the old material stays in use.
	if err := os.WriteFile(files.KeyFile, []byte("-----BEGIN"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(t, serverCfg, peerOldClient); cerr != nil || serr != nil {
		t.Fatalf("after a broken write: client %v, server %v", cerr, serr)
	}

	// Rotate to a new CA: overwrite the files in place.
	newCA := newTestCA(t, "new CA")
	newFiles := newCA.Issue(t, filepath.Join(dir, "new"), "n1")
	for src, dst := range map[string]string{newFiles.CertFile: files.CertFile, newFiles.KeyFile: files.KeyFile, newFiles.CAFile: files.CAFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	peerNew := newCA.Issue(t, filepath.Join(dir, "peer-new"), "peer")
	peerNewServer, peerNewClient, err := peerNew.configsEvery(slog.New(slog.DiscardHandler), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(t, serverCfg, peerNewClient); cerr != nil || serr != nil {
		t.Fatalf("new CA after reload: client %v, server %v", cerr, serr)
	}
	if cerr, serr := handshake(t, peerNewServer, clientCfg); cerr != nil || serr != nil {
		t.Fatalf("dialing with the reloaded certificate: client %v, server %v", cerr, serr)
	}
	// Each side now refuses the other's certificate; whichever checks first
	// ends the handshake.
	cerr, serr := handshake(t, serverCfg, peerOldClient)
	if cerr == nil || serr == nil || !(strings.Contains(cerr.Error(), "not issued by the cluster CA") || strings.Contains(serr.Error(), "not issued by the cluster CA")) {
		t.Fatalf("old CA after rotation: client %v, server %v, want a refusal", cerr, serr)
	}
}
