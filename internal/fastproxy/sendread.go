package fastproxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// sendReader reads a connection, first sending the bytes left pending
// (the proxy's request to the upstream). It waits on the poller between the two without first trying the
// read that would fail with EAGAIN (the peer has not answered microseconds
// after the write; a plain Read tries it, as Go's poller requires, one
// syscall per request for nothing). The write is made from inside a raw
// read, after the poller forgot the connection's earlier readiness
// (pollReset, which defeats a plain wait-then-read), so bytes arriving
// right after the write still wake the wait. What the socket does not take
// at once is finished with the connection's own Write, and then read as
// usual.
//
// Only for a connection on which nothing is waiting unread when the bytes
// go out, since the readiness of anything already there is forgotten: the
// upstream's, between an answer read to its end and the next request (an
// upstream that closed the idle connection meanwhile answers the write
// with a reset, which wakes the wait; bytes an upstream sent after its
// answer, and then nothing, are found by the plain read after the short
// wait, watchAfter, a 502 milliseconds late, or at the head deadline when
// there is no short wait, a request that queued, 504 instead of 502).
// Not the client's:
// a pipelined request may already be in the socket, and the wait for it
// would never end (tried: the differential test's half-closed clients
// hung), so the client's side keeps its read that fails with EAGAIN.
type sendReader struct {
	nc      net.Conn
	rc      syscall.RawConn // nil: no raw access, pending stays empty
	fn      func(fd uintptr) bool
	pending []byte
	st      rawState
}

// rawState is one sendThenRead's, kept with its callback (step, bound
// once in init) so that a request allocates neither.
type rawState struct {
	out, p     []byte // what is left to write; where the read goes
	wrote      bool   // the write was made (whole, in part, or failed)
	n          int
	werr, rerr error
}

func (s *sendReader) init(nc net.Conn) {
	s.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil && rc != nil {
			s.rc, s.fn = rc, s.step
		}
	}
}

// raw reports whether bytes may be left pending.
func (s *sendReader) raw() bool { return s.rc != nil }

func (s *sendReader) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		return s.sendThenRead(p)
	}
	return s.nc.Read(p)
}

// flush writes what is pending now, for a connection that will not be
// read again.
func (s *sendReader) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	out := s.pending
	s.pending = nil
	_, err := s.nc.Write(out)
	return err
}

func (s *sendReader) sendThenRead(p []byte) (int, error) {
	st := &s.st
	*st = rawState{out: s.pending, p: p}
	s.pending = nil
	err := s.rc.Read(s.fn)
	out, n, wrote, werr, rerr := st.out, st.n, st.wrote, st.werr, st.rerr
	*st = rawState{}
	switch {
	case !wrote:
		// The raw read ended before the callback ran (a deadline
		// already past, a closed connection): nothing was sent.
		s.pending = out
		return 0, err
	case werr != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(), Err: werr}
	case len(out) > 0:
		if _, err := s.nc.Write(out); err != nil {
			return 0, err
		}
		return s.nc.Read(p)
	case err != nil:
		return 0, err // the wait's deadline or the connection's close
	case rerr == io.EOF:
		return 0, io.EOF
	case rerr != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(), Err: rerr}
	}
	return n, nil
}

// step is the raw read's callback: the first call writes, the next ones
// read.
func (s *sendReader) step(fd uintptr) bool {
	st := &s.st
	if !st.wrote {
		st.wrote = true
		for len(st.out) > 0 {
			m, err := syscall.Write(int(fd), st.out)
			if m > 0 {
				st.out = st.out[m:]
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true // the rest by the connection's Write
			case err != nil:
				st.werr = os.NewSyscallError("write", err)
				return true
			case m <= 0:
				st.werr = io.ErrUnexpectedEOF
				return true
			}
		}
		return false // sent: wait for the answer
	}
	m, err := syscall.Read(int(fd), st.p)
	switch {
	case err == syscall.EINTR, err == syscall.EAGAIN:
		return false // woken early: wait on
	case err != nil:
		st.rerr = os.NewSyscallError("read", err)
	case m == 0:
		st.rerr = io.EOF
	}
	st.n = max(m, 0)
	return true
}
