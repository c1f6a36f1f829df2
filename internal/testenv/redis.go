package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server child process on a loopback port, with no
// persistence: killing it loses its data, as a crash of a Redis without
// persistence would. Start and Stop may be called again (same port), for
// tests of an outage.
type RedisServer struct {
	Addr string // 127.0.0.1:PORT
	bin  string
	dir  string   // its working directory (cluster nodes.conf)
	args []string // extra arguments (replicaof, cluster mode)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartRedis starts a redis-server of the test's own (so the test may kill
// it), with extra arguments appended to the command line, and kills it when
// the test ends. A missing redis-server skips the test, or fails it in CI.
// Tests that only need a Redis share one: SharedRedis.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	r := newRedis(t, args...)
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func newRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	return &RedisServer{Addr: FreePort(t), bin: RequireBinary(t, "redis-server"), dir: t.TempDir(), args: args}
}

// URL is the server's redis:// URL (database 0).
func (r *RedisServer) URL() string { return "redis://" + r.Addr + "/0" }

// Port is the server's port.
func (r *RedisServer) Port() string {
	_, p, _ := strings.Cut(r.Addr, ":")
	return p
}

// Start starts the server again on the same port (after Stop).
func (r *RedisServer) Start(t testing.TB) {
	t.Helper()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}

func (r *RedisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	args := append([]string{"--port", r.Port(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no"}, r.args...)
	cmd := exec.Command(r.bin, args...)
	// The server dies with the test binary even if it is killed before
	// its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitPortOrExit(r.Addr, 10*time.Second, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	r.cmd, r.exited = cmd, exited
	return nil
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it.
func (r *RedisServer) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// Client returns a go-redis client for the server, closed when the test ends.
func (r *RedisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

var shared struct {
	once sync.Once
	r    *RedisServer
	err  error
}

// SharedRedis returns the package's one redis-server, started by the first
// test that asks and left running until the test binary exits. Tests that
// share it keep apart by key prefix; a test that stops its Redis needs its
// own (StartRedis).
func SharedRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin := RequireBinary(t, "redis-server")
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "headroom-redis-")
		if err != nil {
			shared.err = err
			return
		}
		l, err := listenFree()
		if err != nil {
			shared.err = err
			return
		}
		shared.r = &RedisServer{Addr: l, bin: bin, dir: dir}
		shared.err = shared.r.start()
	})
	if shared.err != nil {
		t.Fatalf("shared redis-server: %v", shared.err)
	}
	return shared.r
}

// Sentinel is a Redis master, one replica and one redis-sentinel watching
// them (quorum 1), all on loopback: enough for a real failover when the
// master is killed.
type Sentinel struct {
	Master, Replica *RedisServer
	Addr            string // the sentinel's address
	MasterName      string
	cmd             *exec.Cmd
}

// StartSentinel starts a master, its replica and a sentinel for the test,
// waits until the replica is in sync and the sentinel knows both, and stops
// them when the test ends. The sentinel declares a master down after
// downAfter without answers.
func StartSentinel(t testing.TB, downAfter time.Duration) *Sentinel {
	t.Helper()
	bin := RequireBinary(t, "redis-sentinel", "redis-server")
	master := StartRedis(t)
	replica := StartRedis(t, "--replicaof", "127.0.0.1", master.Port())
	s := &Sentinel{Master: master, Replica: replica, Addr: FreePort(t), MasterName: "headroom-test"}
	_, port, _ := strings.Cut(s.Addr, ":")
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	text := fmt.Sprintf("port %s\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
		"sentinel monitor %s 127.0.0.1 %s 1\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s 3000\n"+
		"sentinel parallel-syncs %s 1\n",
		port, filepath.Dir(conf), s.MasterName, master.Port(), s.MasterName, downAfter.Milliseconds(), s.MasterName, s.MasterName)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{conf}
	if filepath.Base(bin) == "redis-server" {
		args = append(args, "--sentinel")
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &tailBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-sentinel: %v", err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
	if err := waitPort(s.Addr, 10*time.Second); err != nil {
		t.Fatalf("redis-sentinel: %v\n%s", err, out.String())
	}
	rc := replica.Client(t)
	waitFor(t, 15*time.Second, "the replica to sync with the master", func() bool {
		info, err := rc.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	waitFor(t, 15*time.Second, "the sentinel to discover the replica", func() bool {
		reps, err := sc.Replicas(context.Background(), s.MasterName).Result()
		return err == nil && len(reps) == 1
	})
	return s
}

// MasterAddr asks the sentinel which server is the master now.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(context.Background(), s.MasterName).Result()
	if err != nil {
		t.Fatalf("sentinel get-master-addr-by-name: %v", err)
	}
	return a[0] + ":" + a[1]
}

// URL is the store URL of the sentinel's master.
func (s *Sentinel) URL() string { return "redis-sentinel://" + s.Addr + "/" + s.MasterName + "/0" }

// Cluster is a Redis Cluster of three masters (no replicas) on loopback.
type Cluster struct {
	Nodes []*RedisServer
}

// Addrs lists the nodes' addresses: a seed list.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

// URL is the store URL of the cluster.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

var sharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

// SharedCluster returns the package's one three-master Redis Cluster
// (redis-cli --cluster create over three redis-server --cluster-enabled
// yes), started by the first test that asks and left running until the
// test binary exits.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := RequireBinary(t, "redis-server")
	cli := RequireBinary(t, "redis-cli")
	sharedCluster.once.Do(func() { sharedCluster.c, sharedCluster.err = startCluster(bin, cli) })
	if sharedCluster.err != nil {
		t.Fatalf("shared redis cluster: %v", sharedCluster.err)
	}
	return sharedCluster.c
}

func startCluster(bin, cli string) (*Cluster, error) {
	c := &Cluster{}
	var addrs []string
	for range 3 {
		dir, err := os.MkdirTemp("", "headroom-cluster-")
		if err != nil {
			return nil, err
		}
		n, err := startClusterNode(bin, dir)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		rc := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true})
		for {
			info, err := rc.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				rc.Close()
				return nil, fmt.Errorf("cluster node %s not ok after 20s: %v %s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rc.Close()
	}
	return c, nil
}

// clusterNodeArgs makes a redis-server a cluster node.
var clusterNodeArgs = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}

// startClusterNode starts one cluster-enabled redis-server. A node also
// listens on its port + 10000 for the cluster bus, and that port is not
// reserved by anyone: another test's connection can take it between the
// check and the start (CI saw "bind: Address already in use" on the bus
// port), so a node that dies at start is tried again on other ports.
func startClusterNode(bin, dir string) (*RedisServer, error) {
	var last error
	for range 5 {
		a, err := listenFreeWithBus()
		if err != nil {
			return nil, err
		}
		n := &RedisServer{Addr: a, bin: bin, dir: dir, args: clusterNodeArgs}
		if last = n.start(); last == nil {
			return n, nil
		}
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	return nil, last
}

// waitFor polls cond until it holds, failing the test after timeout (a
// bound for a broken setup, not a timing assertion).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tailBuffer keeps a server's last output, for the error when it fails.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if len(b.b) > 8<<10 {
		b.b = b.b[len(b.b)-8<<10:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
