package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSumCounter(t *testing.T) {
	cases := []struct {
		name, text string
		want       int64
		err        bool
	}{
		{"absent", "# HELP x y\nwrit_audit_records_total{stream=\"agent\"} 5\n", 0, false},
		{"labelled samples add up",
			"# TYPE writ_audit_dropped_total counter\n" +
				"writ_audit_dropped_total{reason=\"queue_full\",stream=\"agent\"} 907009\n" +
				"writ_audit_dropped_total{reason=\"spool_full\",stream=\"workload\"} 3\n", 907012, false},
		{"no labels", "writ_audit_dropped_total 7\n", 7, false},
		{"longer names are other metrics", "writ_audit_dropped_total_bucket{le=\"1\"} 9\nwrit_audit_dropped_totalx 4\n", 0, false},
		{"a label value holding a brace", "writ_audit_dropped_total{reason=\"a}b\"} 2\n", 2, false},
		{"timestamp after the value", "writ_audit_dropped_total{stream=\"human\"} 3 1700000000000\n", 3, false},
		{"scientific notation", "writ_audit_dropped_total 1.5e+06\n", 1500000, false},
		{"no value", "writ_audit_dropped_total{stream=\"agent\"}\n", 0, true},
		{"bad value", "writ_audit_dropped_total abc\n", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := sumCounter(strings.NewReader(c.text), auditDroppedMetric)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
		})
	}
}

// TestAuditDropsSumsNodes: the target's figure is the sum over its nodes'
// /metrics, and a node that does not answer is an error, not a zero.
func TestAuditDropsSumsNodes(t *testing.T) {
	serve := func(body string, code int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}))
	}
	a := serve("writ_audit_dropped_total{reason=\"queue_full\",stream=\"agent\"} 10\n", http.StatusOK)
	defer a.Close()
	b := serve("writ_audit_dropped_total{reason=\"queue_full\",stream=\"agent\"} 5\n", http.StatusOK)
	defer b.Close()
	bad := serve("", http.StatusForbidden)
	defer bad.Close()

	tgt, err := NewTarget([]string{a.URL, b.URL + "/"}, "", ProtoConnect, 1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := tgt.AuditDrops(context.Background())
	if err != nil || n != 15 {
		t.Fatalf("AuditDrops = %d, %v; want 15", n, err)
	}
	tgt, err = NewTarget([]string{a.URL, bad.URL}, "", ProtoConnect, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.AuditDrops(context.Background()); err == nil {
		t.Fatal("a node answering 403 gave no error")
	}
}

func TestSumDropped(t *testing.T) {
	if got := sumDropped([]*Measurement{{AuditDropped: 2}, {AuditDropped: 3}}); got == nil || *got != 5 {
		t.Fatalf("got %v, want 5", got)
	}
	if got := sumDropped([]*Measurement{{AuditDropped: 2}, {AuditDropped: -1}}); got != nil {
		t.Fatalf("a run that did not read the nodes gave %d, want nil", *got)
	}
}
