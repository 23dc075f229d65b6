package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
)

func TestDescribeError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "plain", err: errors.New("boom"), want: "boom"},
		{name: "connect", err: connect.NewError(connect.CodeUnavailable, errors.New("no leader")), want: "unavailable: no leader"},
		{name: "connect no message", err: connect.NewError(connect.CodeInternal, nil), want: "internal"},
		{name: "reason", err: reasonErr(connect.CodePermissionDenied, "cidr not allowed", "cidr_denied", nil),
			want: "permission_denied: cidr not allowed (reason: cidr_denied)"},
		{name: "reason and metadata", err: reasonErr(connect.CodeUnavailable, "not the leader", "not_leader", map[string]string{"leader_id": "n1", "leader_addr": "10.0.0.1:7400"}),
			want: "unavailable: not the leader (reason: not_leader, leader_addr=10.0.0.1:7400, leader_id=n1)"},
		{name: "wrapped", err: &runError{err: fmt.Errorf("load: %w", connect.NewError(connect.CodeNotFound, errors.New("x")))}, want: "not_found: x"},
	}
	for _, tc := range tests {
		if got := describeError(tc.err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "nil", err: nil, want: exitOK},
		{name: "negative", err: errNegative, want: exitNegative},
		{name: "usage", err: usagef("bad"), want: exitUsage},
		{name: "usage inside run", err: markRun(usagef("bad")), want: exitUsage},
		{name: "run", err: markRun(errors.New("x")), want: exitError},
		{name: "cobra", err: errors.New(`unknown command "x" for "writ"`), want: exitUsage},
	}
	for _, tc := range tests {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestReportError(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	reportError(&b, errNegative)
	if b.Len() != 0 {
		t.Errorf("negative answer printed %q", b.String())
	}
	reportError(&b, markRun(connect.NewError(connect.CodeUnauthenticated, errors.New("bad token"))))
	if got := b.String(); got != "error: unauthenticated: bad token\n" {
		t.Errorf("got %q", got)
	}
	b.Reset()
	reportError(&b, usagef("--ttl: bad"))
	if got := b.String(); got != "error: --ttl: bad\nRun 'writ --help' or 'writ <command> --help' for usage.\n" {
		t.Errorf("got %q", got)
	}
}
