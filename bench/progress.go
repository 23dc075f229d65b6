package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// NewProgress returns a Config.Progress that redraws one line on w: label,
// a bar, elapsed/total and the running rate. The line is cleared when a
// measurement ends, so results printed afterwards start on a clean line.
// Safe for concurrent use.
func NewProgress(w io.Writer) func(label string) func(elapsed, total time.Duration, ops int64) {
	var mu sync.Mutex
	return func(label string) func(elapsed, total time.Duration, ops int64) {
		return func(elapsed, total time.Duration, ops int64) {
			mu.Lock()
			defer mu.Unlock()
			if elapsed >= total {
				fmt.Fprint(w, "\r\033[K")
				return
			}
			fmt.Fprint(w, "\r\033[K"+progressLine(label, elapsed, total, ops, 30))
		}
	}
}

// progressLine renders one progress line with a bar of width cells.
func progressLine(label string, elapsed, total time.Duration, ops int64, width int) string {
	frac := 0.0
	if total > 0 {
		frac = min(max(float64(elapsed)/float64(total), 0), 1)
	}
	full := int(frac * float64(width))
	bar := strings.Repeat("=", full)
	if full < width {
		bar += ">" + strings.Repeat(" ", width-full-1)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(ops) / elapsed.Seconds()
	}
	return fmt.Sprintf("%-22s [%s] %5.1fs/%.0fs  %d ops  %.0f/s", label, bar, elapsed.Seconds(), total.Seconds(), ops, rate)
}
