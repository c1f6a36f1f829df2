package fastproxy

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// sendPipe is a SendConn over one end of a net.Pipe (whose writes wait
// for the other end's reads, byte for byte) and that other end.
func sendPipe(t *testing.T, timeout time.Duration) (*SendConn, net.Conn, chan net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	cut := make(chan net.Conn, 1)
	return &SendConn{Conn: a, Timeout: timeout, TimedOut: func(c net.Conn) { cut <- c }}, b, cut
}

// wantCut checks that a write to a client that reads nothing fails with
// ErrSendTimeout, closes the connection and says so, within a bound (not
// a timing assertion: about the timeout, far below the bound).
func wantCut(t *testing.T, sc *SendConn, peer net.Conn, cut chan net.Conn) {
	t.Helper()
	start := time.Now()
	_, err := sc.Write([]byte("never read"))
	if !errors.Is(err, ErrSendTimeout) {
		t.Fatalf("write to a client that reads nothing: %v, want ErrSendTimeout", err)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("ErrSendTimeout is not a timeout net.Error: %#v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cut after %v, want about %v", took, sc.Timeout)
	}
	select {
	case c := <-cut:
		if c != sc.Conn {
			t.Errorf("TimedOut got %v, want the connection", c)
		}
	default:
		t.Error("TimedOut was not called")
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the client's end after the cut: %v, want EOF (closed)", err)
	}
}

func TestSendConnCutsClientThatStopsReading(t *testing.T) {
	sc, peer, cut := sendPipe(t, 100*time.Millisecond)
	wantCut(t, sc, peer, cut)
}

// net/http clears the write deadline after each request and at Hijack:
// the timeout still bounds the next write.
func TestSendConnKeepsItsDeadline(t *testing.T) {
	sc, peer, cut := sendPipe(t, 100*time.Millisecond)
	go io.ReadFull(peer, make([]byte, 2))
	if _, err := sc.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	sc.SetWriteDeadline(time.Time{})
	sc.SetDeadline(time.Time{})
	wantCut(t, sc, peer, cut)
}

// A client that takes a byte every 20 ms is never cut, though the write
// takes four timeouts of 100 ms: the timeout bounds a write without
// progress, not the whole write.
func TestSendConnSparesSlowReader(t *testing.T) {
	sc, peer, cut := sendPipe(t, 100*time.Millisecond)
	msg := []byte("twenty bytes, slowly")
	done := make(chan []byte, 1)
	go func() {
		var got []byte
		b := make([]byte, 1)
		for len(got) < len(msg) {
			time.Sleep(20 * time.Millisecond)
			if _, err := peer.Read(b); err != nil {
				break
			}
			got = append(got, b[0])
		}
		done <- got
	}()
	if n, err := sc.Write(msg); err != nil || n != len(msg) {
		t.Fatalf("slow reader: wrote %d of %d: %v", n, len(msg), err)
	}
	if got := <-done; string(got) != string(msg) {
		t.Errorf("the client got %q", got)
	}
	if len(cut) > 0 {
		t.Error("TimedOut called for a client that kept reading")
	}
}

// A connection idle for longer than the timeout (its write deadline long
// past) writes its next answer at once.
func TestSendConnWritesAfterIdle(t *testing.T) {
	sc, peer, _ := sendPipe(t, 40*time.Millisecond)
	for i := range 2 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		go io.ReadFull(peer, make([]byte, 2))
		if _, err := sc.Write([]byte("ok")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}
