// Command hjbroute-load measures routing end to end on loopback: it starts a broker node and
// a local FHIR sink, POSTs transaction Bundles (one routed Observation each) at a fixed rate
// and reports the latency from the start of each POST to the sink receiving the delivery,
// then finds the sustained delivery rate by writing as fast as a pool of clients can and
// timing until the sink has everything.
//
//	go run ./cmd/hjbroute-load -rate 200 -duration 20s           # Redis at HJB_REDIS_URL or 127.0.0.1:6379
//	go run ./cmd/hjbroute-load -redis '' -rate 200               # embedded queue
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
)

type options struct {
	rate        int
	duration    time.Duration
	maxDuration time.Duration
	clients     int
	patients    int
	redisURL    string
	storeURL    string
}

func main() {
	o := options{}
	defRedis := os.Getenv("HJB_REDIS_URL")
	if defRedis == "" {
		defRedis = "redis://127.0.0.1:6379/0"
	}
	flag.IntVar(&o.rate, "rate", 200, "bundles per second in the latency phase")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of the latency phase")
	flag.DurationVar(&o.maxDuration, "max-duration", 10*time.Second, "length of the throughput phase (0 skips it)")
	flag.IntVar(&o.clients, "clients", 64, "concurrent writers in the throughput phase")
	flag.IntVar(&o.patients, "patients", 200, "patients the Observations are spread over")
	flag.StringVar(&o.redisURL, "redis", defRedis, "Redis URL for the queue; empty for the embedded queue")
	flag.StringVar(&o.storeURL, "store", os.Getenv("HJB_STORE_URL"), "postgres:// URL; empty for the embedded store")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "hjbroute-load:", err)
		os.Exit(1)
	}
}

// timing records when each Observation's POST started and when the sink got it.
type timing struct {
	mu    sync.Mutex
	start map[string]time.Time
	e2e   []time.Duration
	post  []time.Duration
	first time.Time
	last  time.Time
	done  atomic.Int64
}

func key(patient string, seq int) string { return fmt.Sprintf("%s#%d", patient, seq) }

func (tm *timing) accepted(a deliverytest.Attempt) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	k := key(a.Patient, a.Seq)
	st, ok := tm.start[k]
	if !ok {
		return // a duplicate, already counted
	}
	delete(tm.start, k)
	tm.e2e = append(tm.e2e, a.At.Sub(st))
	if tm.first.IsZero() {
		tm.first = a.At
	}
	tm.last = a.At
	tm.done.Add(1)
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := deliverytest.NewSink()
	defer sink.Close()
	dir, err := os.MkdirTemp("", "hjbroute-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath, err := deliverytest.WriteConfig(dir, deliverytest.Endpoints{LD: sink.FHIRBase(), Court: sink.FHIRBase(), Custody: sink.FHIRBase()})
	if err != nil {
		return err
	}
	cfg := app.Config{Addr: "127.0.0.1:0", DataDir: dir, StoreURL: o.storeURL, ConfigFile: cfgPath}
	queueName := "embedded"
	if o.redisURL != "" {
		prefix := fmt.Sprintf("hjbload:%d:", time.Now().UnixNano())
		cfg.RedisURL, cfg.RedisPrefix = o.redisURL, prefix
		queueName = "redis"
		defer cleanRedis(o.redisURL, prefix)
	}
	node, err := app.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	addrc := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- node.Serve(ctx, func(a string) { addrc <- a }) }()
	base := "http://" + <-addrc + "/fhir"
	token, err := node.Token(ctx, "custody")
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}, Timeout: 30 * time.Second}
	fmt.Printf("hjbroute-load: %s store, %s queue, %d CPUs, %s\n", node.Store.Backend(), queueName, runtime.NumCPU(), runtime.Version())

	tm := &timing{start: map[string]time.Time{}}
	sink.OnAccept(tm.accepted)
	var seq atomic.Int64
	post := func() error {
		n := int(seq.Add(1))
		patient := fmt.Sprintf("Patient/load%d", n%o.patients)
		body := bundle(patient, n)
		t0 := time.Now()
		tm.mu.Lock()
		tm.start[key(patient, n)] = t0
		tm.mu.Unlock()
		req, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST transaction: HTTP %d", resp.StatusCode)
		}
		tm.mu.Lock()
		tm.post = append(tm.post, time.Since(t0))
		tm.mu.Unlock()
		return nil
	}

	// Warm up connections and caches.
	for range 50 {
		if err := post(); err != nil {
			return err
		}
	}
	if err := drain(tm, 50, 30*time.Second); err != nil {
		return err
	}
	tm.reset()

	// Phase 1: open loop at the target rate.
	sent, lateStarts, err := paced(o, post)
	if err != nil {
		return err
	}
	if err := drain(tm, sent, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("latency phase: %d bundles at %d/s for %s (%d sends started late)\n", sent, o.rate, o.duration, lateStarts)
	tm.report("POST to sink")
	tm.reportPost()

	if o.maxDuration > 0 {
		tm.reset()
		start := time.Now()
		var n atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, o.clients)
		stop := time.Now().Add(o.maxDuration)
		for range o.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if err := post(); err != nil {
						errc <- err
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			return err
		}
		writeEnd := time.Since(start)
		if err := drain(tm, int(n.Load()), 120*time.Second); err != nil {
			return err
		}
		all := time.Since(start)
		fmt.Printf("throughput phase: %d clients wrote %d bundles in %s (%.0f writes/s); all delivered after %s: %.0f deliveries/s sustained\n",
			o.clients, n.Load(), writeEnd.Round(time.Millisecond), float64(n.Load())/writeEnd.Seconds(), all.Round(time.Millisecond), float64(n.Load())/all.Seconds())
		tm.report("POST to sink under saturation")
	}
	cancel()
	return <-served
}

// paced starts posts at o.rate per second for o.duration; each runs in its own goroutine so a
// slow answer does not delay the next send (open loop).
func paced(o options, post func() error) (int, int, error) {
	interval := time.Second / time.Duration(o.rate)
	total := int(o.duration / interval)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	late := 0
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else if d < -interval {
			late++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := post(); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return total, late, err
	}
	return total, late, nil
}

func drain(tm *timing, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for tm.done.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d deliveries arrived within %s", tm.done.Load(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (tm *timing) reset() {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.e2e, tm.post, tm.first, tm.last = nil, nil, time.Time{}, time.Time{}
	tm.done.Store(0)
}

func (tm *timing) report(what string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	fmt.Printf("  %s (%d): %s\n", what, len(tm.e2e), percentiles(tm.e2e))
}

func (tm *timing) reportPost() {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	fmt.Printf("  POST answered (%d): %s\n", len(tm.post), percentiles(tm.post))
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", p(.50), p(.90), p(.99), s[len(s)-1].Round(10*time.Microsecond))
}

// bundle is a transaction Bundle creating one Observation, routed to the sink.
func bundle(patient string, seq int) []byte {
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle",
		"type":         "transaction",
		"entry": []any{map[string]any{
			"fullUrl":  fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", seq),
			"resource": deliverytest.Observation(patient, seq),
			"request":  map[string]any{"method": "POST", "url": "Observation"},
		}},
	})
	return b
}

func cleanRedis(url, prefix string) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}
