package admit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/headroom-dev/headroom/internal/buildinfo"
)

// Outcome is what happened to a request, one label value per request. The
// set is fixed, so with pools (from config) it bounds every label: keys are
// never labels.
type Outcome uint8

const (
	OK                 Outcome = iota // proxied, upstream answered, client got it
	ShadowRestricted                  // proxied, but would have been refused (shadow mode)
	ClientAbort                       // proxied, the client left before the answer (499)
	UpstreamError                     // proxied, the upstream failed or timed out (502/504)
	Restricted                        // refused: over budget / restricted (429)
	ConcurrencyLimited                // refused: too many in flight for the key (429)
	QueueFull                         // refused: pool queue full (503)
	QueueTimeout                      // refused: waited too long in the pool queue (503)
	AbortedInQueue                    // the client left while queued (499)
	BodyTimeout                       // refused: the request body came too slowly (408)
	BodyTooLarge                      // refused: the request body is over request_body.max (413)
	BodyIncomplete                    // the client left or broke off mid-body (499)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"ok", "shadow_restricted", "client_abort", "upstream_error",
	"restricted", "concurrency_limited", "queue_full", "queue_timeout", "aborted_in_queue",
	"body_timeout", "body_too_large", "body_incomplete",
}

func (o Outcome) String() string { return outcomeNames[o] }

// metrics are the guard's Prometheus collectors, all prefixed headroom_.
type metrics struct {
	requests     *prometheus.CounterVec
	workerSecs   *prometheus.CounterVec
	restrictions *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	queueDepth   *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	upstream     *prometheus.HistogramVec
	uncharged    *prometheus.CounterVec
}

// poolMetrics are one pool's children, resolved once so the hot path does
// no label lookups.
type poolMetrics struct {
	requests   [numOutcomes]prometheus.Counter
	workerSecs [numOutcomes]prometheus.Counter // nil for outcomes that never reach the upstream
	restricted [2]prometheus.Counter           // enforced, shadow
	inFlight   prometheus.Gauge
	queueDepth prometheus.Gauge
	upstream   prometheus.Observer
	uncharged  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, keys func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_requests_total",
			Help: "Requests by pool and outcome (ok, shadow_restricted, client_abort, upstream_error, restricted, concurrency_limited, queue_full, queue_timeout, aborted_in_queue, body_timeout, body_too_large, body_incomplete).",
		}, []string{"pool", "outcome"}),
		workerSecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_worker_seconds_total",
			Help: "Upstream worker time charged, by pool and outcome; a client abort is charged its real upstream time.",
		}, []string{"pool", "outcome"}),
		restrictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_restrictions_total",
			Help: "Keys newly restricted for going over budget, by the pool of the request that tipped them and mode (enforced, or shadow: would restrict).",
		}, []string{"pool", "mode"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "headroom_in_flight",
			Help: "Requests upstream now, by pool.",
		}, []string{"pool"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "headroom_queue_depth",
			Help: "Requests waiting for a pool slot now, by pool.",
		}, []string{"pool"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "headroom_upstream_duration_seconds",
			Help: "Worker time per request that reached the upstream (handed upstream to end of its response), by pool.",
			// Up to the long requests of seeds/03 (30 s) and beyond.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"pool"}),
		uncharged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_outage_uncharged_seconds_total",
			Help: "Worker time of requests that failed upstream while most of their pool's requests failed (an outage), not charged to their keys' budgets, by pool.",
		}, []string{"pool"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_config_reloads_total",
			Help: "Configuration reloads by result (ok, error: the old configuration was kept).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.workerSecs, m.restrictions, m.inFlight, m.queueDepth, m.reloads, m.upstream, m.uncharged,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "headroom_keys_tracked",
			Help: "Keys the ledger holds (recently active or restricted).",
		}, keys),
		// What every Prometheus user expects beside the guard's own series:
		// the Go runtime, the process (CPU, memory, file descriptors) and
		// which build this is.
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector())
	return m
}

func (m *metrics) pool(name string) *poolMetrics {
	pm := &poolMetrics{
		inFlight:   m.inFlight.WithLabelValues(name),
		queueDepth: m.queueDepth.WithLabelValues(name),
		upstream:   m.upstream.WithLabelValues(name),
		uncharged:  m.uncharged.WithLabelValues(name),
		restricted: [2]prometheus.Counter{
			m.restrictions.WithLabelValues(name, "enforced"),
			m.restrictions.WithLabelValues(name, "shadow"),
		},
	}
	for o := range numOutcomes {
		pm.requests[o] = m.requests.WithLabelValues(name, o.String())
	}
	// Only requests that reached the upstream cost worker time (a body
	// that fails while streaming has reached it); the other outcomes get no
	// worker-seconds series.
	for _, o := range []Outcome{OK, ShadowRestricted, ClientAbort, UpstreamError,
		BodyTimeout, BodyTooLarge, BodyIncomplete} {
		pm.workerSecs[o] = m.workerSecs.WithLabelValues(name, o.String())
	}
	return pm
}
