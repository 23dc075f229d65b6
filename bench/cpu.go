package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUSampler reads the CPU time (user + system) used so far by the load
// generator and by the servers it drives. servers is negative when they
// cannot be read (a remote cluster). On a shared machine where rates swing
// from run to run, CPU per operation is the steadier figure.
type CPUSampler func() (client, servers time.Duration, err error)

// ProcessCPU samples this process (getrusage) and the server processes
// pids (/proc/PID/stat, Linux). With no pids it reports the client only.
func ProcessCPU(pids []int) CPUSampler {
	return func() (time.Duration, time.Duration, error) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, 0, fmt.Errorf("getrusage: %w", err)
		}
		client := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if len(pids) == 0 {
			return client, -1, nil
		}
		var servers time.Duration
		for _, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return client, 0, err
			}
			d, err := parseProcStatCPU(string(b))
			if err != nil {
				return client, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
			}
			servers += d
		}
		return client, servers, nil
	}
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports (the kernel's ABI, whatever CONFIG_HZ is).
const clockTick = 10 * time.Millisecond

// parseProcStatCPU returns utime + stime from a /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q: not numbers", f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}
