package admit

import "github.com/prometheus/client_golang/prometheus"

// What the admin page and the dashboards read of the pools and keys, beside
// the counters.

// MaxConcurrent is the pool's capacity in workers; 0 for the implicit
// unlimited "default" pool.
func (p *Pool) MaxConcurrent() int {
	if p.slots == nil {
		return 0
	}
	return p.max
}

// QueueMax is how many requests may wait for a slot of the pool.
func (p *Pool) QueueMax() int { return int(p.queue) }

// Pools returns the pools of the configuration in force, in its order,
// the catch-all (or the implicit "default") last.
func (c *Core) Pools() []*Pool {
	rt := c.st.Load().router
	out := make([]*Pool, 0, len(rt.pools)+1)
	out = append(out, rt.pools...)
	return append(out, rt.catchAll)
}

// Label is the label the configuration gives a ledger key (an override's
// label), or "".
func (c *Core) Label(key string) string { return c.st.Load().policy.label(key) }

// capacityCollector exports each limited pool's capacity, so "in flight
// over capacity" is one PromQL division (the pool-at-capacity alert in
// deploy/prometheus/alerts.yml). It follows reloads: the pools are read at
// every scrape.
type capacityCollector struct {
	c    *Core
	desc *prometheus.Desc
}

func newCapacityCollector(c *Core) *capacityCollector {
	return &capacityCollector{c: c, desc: prometheus.NewDesc("headroom_pool_max_concurrent",
		"Requests the pool may have upstream at once (pools[].max_concurrent); absent for a pool without a limit.",
		[]string{"pool"}, nil)}
}

func (cc *capacityCollector) Describe(ch chan<- *prometheus.Desc) { ch <- cc.desc }

func (cc *capacityCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range cc.c.Pools() {
		if n := p.MaxConcurrent(); n > 0 {
			ch <- prometheus.MustNewConstMetric(cc.desc, prometheus.GaugeValue, float64(n), p.name)
		}
	}
}
