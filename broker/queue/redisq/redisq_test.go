package redisq_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/queue/queuetest"
	"github.com/hjbroker/hjbroker/broker/queue/redisq"
)

func redisURL() string {
	if u := os.Getenv("HJB_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// client connects to the test Redis, skipping (or failing under HJB_REQUIRE_SERVICES=1) when
// it is unreachable.
func client(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redisURL())
	if err != nil {
		t.Fatalf("HJB_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		if os.Getenv("HJB_REQUIRE_SERVICES") == "1" {
			t.Fatalf("Redis is required but unreachable at %s: %v", opts.Addr, err)
		}
		t.Skipf("Redis unreachable at %s: %v", opts.Addr, err)
	}
	return c
}

// prefix returns a random key prefix whose keys are deleted when the test ends.
func prefix(t testing.TB) string {
	p := fmt.Sprintf("hjbtest:%d:%d:", time.Now().UnixNano(), rand.Uint64())
	t.Cleanup(func() {
		c := client(t)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}

func open(t testing.TB) queue.Queue {
	c := client(t)
	t.Cleanup(func() { c.Close() })
	return redisq.New(c, prefix(t))
}

func TestContract(t *testing.T) {
	queuetest.Run(t, open)
}

func TestReopen(t *testing.T) {
	queuetest.RunReopen(t, func(t testing.TB) (queue.Queue, func() queue.Queue) {
		c, p := client(t), prefix(t)
		return redisq.New(c, p), func() queue.Queue {
			// A new connection: nothing survives in the first client.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c = client(t)
			t.Cleanup(func() { c.Close() })
			return redisq.New(c, p)
		}
	})
}

// TestKeysRemoved: a finished message leaves no per-message keys behind.
func TestKeysRemoved(t *testing.T) {
	c := client(t)
	defer c.Close()
	p := prefix(t)
	q := redisq.New(c, p)
	ctx := context.Background()
	ids, err := q.Enqueue(ctx, queue.Message{Destination: "d", Key: "K", Body: []byte("a")},
		queue.Message{Destination: "d", Key: "K", Body: []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		ms, err := q.Claim(ctx, "d", "c", 10, time.Minute)
		if err != nil || len(ms) != 1 || ms[0].ID != id {
			t.Fatalf("claim: %v %v", ms, err)
		}
		if err := q.Ack(ctx, "d", id); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := c.Keys(ctx, p+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The (empty) stream with its consumer group and the destination set remain.
	want := map[string]bool{p + "{d}:s": true, p + "destinations": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("left behind: %s", k)
		}
	}
}

func BenchmarkQueue(b *testing.B) {
	queuetest.Bench(b, open)
}
