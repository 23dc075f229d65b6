package main

import (
	"runtime/debug"
	"testing"
)

// TestSetGCPercent: --gc-percent applies unless GOGC is set, and the answer
// is the percent in force.
func TestSetGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	for _, tc := range []struct {
		name    string
		gogc    string
		percent int
		want    int
	}{
		{"flag applies", "", 250, 250},
		{"flag applies again", "", 150, 150},
		{"GOGC wins", "300", 250, 150}, // the runtime applied GOGC at start; here the previous case's 150 stands in for it
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			}
			if got := setGCPercent(getenv, tc.percent); got != tc.want {
				t.Errorf("setGCPercent = %d, want %d", got, tc.want)
			}
			cur := debug.SetGCPercent(-1)
			debug.SetGCPercent(cur)
			if cur != tc.want {
				t.Errorf("runtime GC percent %d, want %d", cur, tc.want)
			}
		})
	}
}
