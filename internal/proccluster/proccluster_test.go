package proccluster

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortBelowEphemeralRange: every port FreePort picks is outside the
// range the kernel gives outgoing connections, and can be listened on.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	if lo < 11000 {
		t.Skipf("ephemeral range %d-%d leaves no room below it", lo, hi)
	}
	seen := map[string]bool{}
	for range 50 {
		addr, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < 10000 || port >= lo {
			t.Fatalf("FreePort() = %s: want a port in [10000, %d)", addr, lo)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		_ = ln.Close()
		seen[addr] = true
	}
	if len(seen) < 40 {
		t.Errorf("50 picks gave only %d distinct ports", len(seen))
	}
}
