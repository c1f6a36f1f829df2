package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSharedRedisIsOneServer(t *testing.T) {
	a, b := SharedRedis(t), SharedRedis(t)
	if a != b {
		t.Fatalf("two shared servers: %s and %s", a.Addr, b.Addr)
	}
	if err := a.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestStartRedisRestartsOnItsPort(t *testing.T) {
	r := StartRedis(t)
	c := r.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping after Stop succeeded")
	}
	r.Start(t)
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("after a restart without persistence: %v, want the key gone", err)
	}
}

func TestSharedClusterServesEverySlot(t *testing.T) {
	cl := SharedCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	var n atomic.Int32 // ForEachMaster calls back concurrently
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n.Add(1)
		return m.Ping(ctx).Err()
	})
	if err != nil || n.Load() != 3 {
		t.Fatalf("masters: %d, %v; want 3", n.Load(), err)
	}
}

func TestSentinelFailsOver(t *testing.T) {
	s := StartSentinel(t, 300*time.Millisecond)
	if got := s.MasterAddr(t); got != s.Master.Addr {
		t.Fatalf("master %s, want %s", got, s.Master.Addr)
	}
	s.Master.Stop()
	waitFor(t, 30*time.Second, "the sentinel to promote the replica", func() bool {
		return s.MasterAddr(t) == s.Replica.Addr
	})
}

// A cluster node whose bus port is taken dies at start (CI saw it): start
// must say so at once, not after waiting 10 s for a port nobody will open,
// so that startClusterNode can try other ports.
func TestClusterNodeWithBusPortTakenFailsAtOnce(t *testing.T) {
	bin := RequireBinary(t, "redis-server")
	var n *RedisServer
	var bus net.Listener
	for try := 0; bus == nil; try++ {
		addr, err := listenFreeWithBus()
		if err != nil {
			t.Fatal(err)
		}
		n = &RedisServer{Addr: addr, bin: bin, dir: t.TempDir(), args: clusterNodeArgs}
		port, _ := strconv.Atoi(n.Port())
		// Another test may take the bus port between the check and here.
		if bus, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+clusterBusOffset)); err != nil && try == 4 {
			t.Fatalf("could not take a bus port in 5 tries: %v", err)
		}
	}
	defer bus.Close()
	start := time.Now()
	err := n.start()
	if err == nil {
		n.Stop()
		t.Fatal("a cluster node started with its bus port taken")
	}
	if !strings.Contains(err.Error(), "exited before listening") {
		t.Fatalf("start error = %v, want it to say the server exited", err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
