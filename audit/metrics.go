package audit

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records         *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	filtered        *prometheus.CounterVec
	sinkErrors      *prometheus.CounterVec
	durableFailures *prometheus.CounterVec
	queueWaits      *prometheus.CounterVec
}

// newMetrics builds the audit metrics and registers them (and spool depth
// gauges read at scrape time) on reg, when reg is not nil.
func newMetrics(reg prometheus.Registerer, l *Log) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_records_total", Help: "Audit records written to their sink, by stream.",
		}, []string{"stream"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_dropped_total", Help: "Audit records lost (each loss is also a gap record), by stream and reason.",
		}, []string{"stream", "reason"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_filtered_total", Help: "Audit records a configured filter dropped on purpose, by stream and filter.",
		}, []string{"stream", "filter"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_sink_errors_total", Help: "Failed writes of spooled audit batches to a sink, by stream.",
		}, []string{"stream"}),
		durableFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_durable_failures_total", Help: "Must records (issuance, renewal, admin changes) that could not be made durable, so their request failed closed, by stream.",
		}, []string{"stream"}),
		queueWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_audit_queue_waits_total", Help: "Spooled audit records whose request waited for room in a full queue (back-pressure; queue_wait), by stream. Those that still found none are in writ_audit_dropped_total{reason=\"queue_full\"}.",
		}, []string{"stream"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.records, m.dropped, m.filtered, m.sinkErrors, m.durableFailures, m.queueWaits, &spoolCollector{l: l})
	return m
}

var (
	spoolRecordsDesc = prometheus.NewDesc("writ_audit_spool_depth_records", "Audit records waiting in the on-disk spool for their sink.", []string{"stream"}, nil)
	spoolBytesDesc   = prometheus.NewDesc("writ_audit_spool_depth_bytes", "Bytes waiting in the on-disk spool for their sink.", []string{"stream"}, nil)
	queueDesc        = prometheus.NewDesc("writ_audit_queue_depth", "Audit records in the in-memory queue in front of the spool.", []string{"stream"}, nil)
)

// spoolCollector reads the spool depths at scrape time.
type spoolCollector struct{ l *Log }

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- spoolRecordsDesc
	ch <- spoolBytesDesc
	ch <- queueDesc
}

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.l.streams {
		if s == nil || s.spool == nil {
			continue
		}
		recs, bytes := s.spool.depth()
		ch <- prometheus.MustNewConstMetric(spoolRecordsDesc, prometheus.GaugeValue, float64(recs), string(s.name))
		ch <- prometheus.MustNewConstMetric(spoolBytesDesc, prometheus.GaugeValue, float64(bytes), string(s.name))
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(len(s.queue)), string(s.name))
	}
}
