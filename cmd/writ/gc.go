package main

import (
	"runtime/debug"

	"github.com/writ-dev/writ/node"
)

// defaultGCPercent is writ server's garbage collector target (Go's GOGC)
// unless --gc-percent or the GOGC environment variable says otherwise. Go's
// default of 100 lets the heap reach twice the live data; at 200 it may reach
// three times, and collection runs half as often. On the Authorize path a
// call allocates about 14 KB that is garbage once the answer is written, so
// the collector's share of CPU is large: 200 cut process CPU per audited
// Authorize by about 15 % in BenchmarkAuthorizeInProcess (docs/benchmarks.md,
// "decision.auth opt-in, GC target 200, direct-link revocation benchmark"). The cost is memory: with 1,000,000 live
// leases (about 280 MB) the heap may grow to about 850 MB instead of 560 MB.
// Set GOMEMLIMIT as well where memory is tight: the runtime then collects
// sooner as the heap nears it.
const defaultGCPercent = node.DefaultGCPercent

// setGCPercent applies percent unless GOGC is set in the environment (the
// runtime has applied that already, and an operator's explicit setting
// wins); it returns the percent in force.
func setGCPercent(getenv func(string) string, percent int) int {
	if getenv("GOGC") != "" {
		cur := debug.SetGCPercent(-1)
		debug.SetGCPercent(cur)
		return cur
	}
	debug.SetGCPercent(percent)
	return percent
}
