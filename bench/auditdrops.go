package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// auditDroppedMetric is the counter of audit records a node dropped (queue
// or spool full, spool error), by stream and reason.
const auditDroppedMetric = "writ_audit_dropped_total"

// AuditDrops reads every node's /metrics and sums the audit records it has
// dropped. A figure measured while the audit log dropped records is not the
// figure of an audited system, so every scenario reports the drops it saw
// (Result.AuditDropped).
func (t *Target) AuditDrops(ctx context.Context) (int64, error) {
	var total int64
	for _, u := range t.URLs {
		n, err := scrapeAuditDrops(ctx, t.hc, strings.TrimSuffix(u, "/")+"/metrics")
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func scrapeAuditDrops(ctx context.Context, hc *http.Client, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return sumCounter(resp.Body, auditDroppedMetric)
}

// sumCounter adds up every sample of the counter name in a Prometheus text
// exposition ("name{labels} value" lines; # lines are comments).
func sumCounter(r io.Reader, name string) (int64, error) {
	var total float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue // a comment, another metric, or one whose name only starts with name
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("malformed sample %q", line)
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("malformed sample %q: %w", line, err)
		}
		total += v
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return int64(total), nil
}
