package guard

import (
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headroom-dev/headroom/internal/admit"
)

// sendTimeouts counts and logs the client connections closed because the
// client took no bytes of its answer for timeouts.client_send
// (fastproxy.SendConn, on both front-ends): headroom_client_send_timeouts_total,
// and a log line at most every connLogEvery with the count, so that a
// flood of clients that stop reading is one line per interval. The
// request's own line in the access log says 499, as for any client that
// left, with the upstream's real status and time.
type sendTimeouts struct {
	total prometheus.Counter
	log   func(msg string, args ...any)
	limit time.Duration

	mu    sync.Mutex
	last  time.Time
	since int
}

func (g *Guard) newSendTimeouts() *sendTimeouts {
	st := &sendTimeouts{
		total: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headroom_client_send_timeouts_total",
			Help: "Client connections closed because the client took no bytes of its answer for timeouts.client_send (it stopped reading).",
		}),
		log:   g.log.Warn,
		limit: g.core.Config().Timeouts.ClientSend.D(),
	}
	g.core.Registry().MustRegister(st.total)
	return st
}

// timedOut is fastproxy.SendConn's TimedOut.
func (st *sendTimeouts) timedOut(c net.Conn) {
	st.total.Inc()
	st.mu.Lock()
	st.since++
	now := time.Now()
	if now.Sub(st.last) < connLogEvery {
		st.mu.Unlock()
		return
	}
	count := st.since
	st.last, st.since = now, 0
	st.mu.Unlock()
	st.log("client connection closed: the client took no bytes of its answer for timeouts.client_send",
		"client_send", st.limit.String(), "client", admit.PeerAddr(c.RemoteAddr().String()).String(), "closed", count, "in", connLogEvery.String())
}
