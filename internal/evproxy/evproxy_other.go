//go:build !linux

package evproxy

import (
	"context"
	"errors"
	"net"

	"github.com/headroom-dev/headroom/internal/fastproxy"
)

// Options configures a Server.
type Options struct {
	fastproxy.Options
	// Loops is the number of event loops; 0 means GOMAXPROCS.
	Loops int
}

// Server is the event-loop front-end; not available on this system.
type Server struct{}

// ErrUnsupported is New's error on systems without epoll.
var ErrUnsupported = errors.New("evproxy: the event loop needs Linux (epoll)")

// New returns ErrUnsupported.
func New(o Options) (*Server, error) { return nil, ErrUnsupported }

func (s *Server) Serve(l net.Listener) error         { return ErrUnsupported }
func (s *Server) Shutdown(ctx context.Context) error { return nil }
func (s *Server) Close() error                       { return nil }
