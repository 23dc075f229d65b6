package main

import (
	"github.com/spf13/cobra"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// secondsValue is a duration flag that lands in an int64 *_seconds field.
type secondsValue struct {
	n   *int64
	set bool
}

func (v *secondsValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return seconds(*v.n)
}

func (v *secondsValue) Set(s string) error {
	n, err := parseSeconds(s)
	if err != nil {
		return err
	}
	*v.n, v.set = n, true
	return nil
}

func (v *secondsValue) Type() string { return "duration" }

func secondsFlag(cmd *cobra.Command, p *int64, name, usage string) {
	cmd.Flags().Var(&secondsValue{n: p}, name, usage)
}

// readFlags are --consistency and --min-index, for every read call.
type readFlags struct {
	consistency string
	minIndex    uint64
}

func (r *readFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.consistency, "consistency", "", "read consistency: stale or linearizable (default: the server's)")
	cmd.Flags().Uint64Var(&r.minIndex, "min-index", 0, "wait until the node has applied this Raft index (read your writes)")
}

func (r *readFlags) options() (*writv1.ReadOptions, error) {
	c, err := parseConsistency(r.consistency)
	if err != nil {
		return nil, flagErr("consistency", err)
	}
	if c == writv1.Consistency_CONSISTENCY_UNSPECIFIED && r.minIndex == 0 {
		return nil, nil
	}
	return &writv1.ReadOptions{Consistency: c, MinIndex: r.minIndex}, nil
}
