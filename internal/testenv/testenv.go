// Package testenv lets integration tests use real servers (nginx, Redis,
// wrk, Chromium) from the machine: a missing program skips the test on a
// developer's laptop, but fails it in CI (CI=true), where the test command
// is expected to have installed everything.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where nothing may be skipped for
// lack of a server.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// RequireBinary returns the path of the named program, skipping the test
// when it is missing locally and failing it in CI.
func RequireBinary(t testing.TB, name string, alternatives ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			p := dir + "/" + n
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
	}
	SkipOrFail(t, name+" not found: install it (scripts/deps.sh does) to run this test")
	return ""
}

// FreePort returns a loopback TCP address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := listenFree()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return addr
}

func listenFree() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// clusterBusOffset is how far above its port a Redis Cluster node listens
// for the cluster bus.
const clusterBusOffset = 10000

// listenFreeWithBus returns a loopback address whose port and port +
// clusterBusOffset were both free a moment ago.
func listenFreeWithBus() (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+clusterBusOffset > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+clusterBusOffset))
		if err == nil {
			bus.Close()
		}
		l.Close()
		if err == nil {
			return fmt.Sprintf("127.0.0.1:%d", port), nil
		}
	}
	return "", fmt.Errorf("no loopback port p with p+%d also free in 50 tries", clusterBusOffset)
}

// WaitForPort waits until something accepts connections on addr.
func WaitForPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitPort(addr, timeout); err != nil {
		t.Fatal(err)
	}
}

func waitPort(addr string, timeout time.Duration) error {
	return waitPortOrExit(addr, timeout, nil)
}

// waitPortOrExit is waitPort that gives up at once when exited is closed:
// a server that died at start will never listen.
func waitPortOrExit(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
