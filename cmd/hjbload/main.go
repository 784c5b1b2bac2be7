// Command hjbload generates FHIR load against a broker over loopback HTTP and reports
// throughput, latency percentiles and memory. Without --target it starts a broker node in
// process on a temporary data directory, so no server is needed. Every run is bounded by
// --duration and stops by itself.
//
//	go run ./cmd/hjbload --scenario mixed --duration 10m --conns 50
//	go run ./cmd/hjbload --target http://127.0.0.1:8080/fhir --scenario read --seed 100000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
)

type options struct {
	target     string
	dataDir    string
	seed       int
	seedConns  int
	bundle     int
	duration   time.Duration
	conns      int
	mix        string
	scenario   string
	interval   time.Duration
	timeout    time.Duration
	rate       float64
	seedLimit  time.Duration
	seedForced bool // --seed given explicitly
	token      string
	client     string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // usage already printed
		}
		fmt.Fprintln(os.Stderr, "hjbload:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("hjbload", flag.ContinueOnError)
	fs.StringVar(&o.target, "target", "", "FHIR base URL of a running broker on loopback (default: start a node in process)")
	fs.StringVar(&o.token, "token", "", "access token for --target (e.g. from `hjbroker token --client operator`); the in-process node mints its own")
	fs.StringVar(&o.client, "client", "operator", "configured client whose token the in-process node mints")
	fs.StringVar(&o.dataDir, "data-dir", "", "data directory of the in-process node (default: a temporary directory, removed at exit)")
	fs.IntVar(&o.seed, "seed", 100000, "resources to seed before the run (Patients and Observations in transaction Bundles); 0 uses what the store holds")
	fs.IntVar(&o.seedConns, "seed-conns", 2, "concurrent clients while seeding")
	fs.IntVar(&o.bundle, "bundle", 100, "entries per transaction Bundle (seed and tx requests)")
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long the measured load runs")
	fs.IntVar(&o.conns, "conns", 50, "concurrent connections")
	fs.StringVar(&o.mix, "mix", "read=70,search=20,write=10", "request mix of the mixed scenario: read, search (= search-id + search-patient), search-id, search-patient, write, tx")
	fs.StringVar(&o.scenario, "scenario", "mixed", "ingest (tx only), read, search, or mixed (--mix)")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "progress report interval")
	fs.Float64Var(&o.rate, "rate", 0, "total requests/s to offer, spread over the connections (open loop; latency counts from the scheduled start); 0 sends as fast as answers come back")
	fs.DurationVar(&o.seedLimit, "seed-timeout", 15*time.Minute, "longest the seed may take before the run gives up")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fs.Visit(func(f *flag.Flag) { o.seedForced = o.seedForced || f.Name == "seed" })
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.interval <= 0 || o.timeout <= 0 || o.seedLimit <= 0:
		return o, errors.New("--duration, --interval, --timeout and --seed-timeout must be positive")
	case o.conns <= 0 || o.seedConns <= 0 || o.bundle <= 0 || o.seed < 0 || o.rate < 0:
		return o, errors.New("--conns, --seed-conns and --bundle must be positive, --seed and --rate non-negative")
	}
	return o, nil
}

// scenarioMix is the request mix of a scenario.
func scenarioMix(o options) (mix, error) {
	switch o.scenario {
	case "ingest":
		return mix{kindTx: 1}, nil
	case "read":
		return mix{kindRead: 1}, nil
	case "search":
		return mix{kindSearchID: 1, kindSearchPatient: 1}, nil
	case "mixed":
		return parseMix(o.mix)
	}
	return nil, fmt.Errorf("--scenario %q: want ingest, read, search or mixed", o.scenario)
}

// checkLoopback refuses targets off this machine: the tool is for local measurement only.
func checkLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--target %q: want an http(s) base URL such as http://127.0.0.1:8080/fhir", target)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--target %q: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed", target)
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	m, err := scenarioMix(o)
	if err != nil {
		return err
	}
	// Ingest measures writes into whatever is there; seeding first is opt-in.
	if o.scenario == "ingest" && !o.seedForced {
		o.seed = 0
	}
	base := o.target
	var renew func(*client)
	if base == "" {
		node, addr, shutdown, err := startNode(ctx, o.dataDir)
		if err != nil {
			return err
		}
		defer shutdown()
		base = "http://" + addr + "/fhir"
		fmt.Fprintf(out, "in-process broker %s (%s store) at %s, requests as client %q\n", app.Version, node.Store.Backend(), base, o.client)
		if o.token, err = node.Token(ctx, o.client); err != nil {
			return err
		}
		renew = func(c *client) {
			// Access tokens live minutes; a long run renews its own before they expire.
			t := time.NewTicker(time.Minute)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if tok, err := node.Token(ctx, o.client); err == nil {
						c.token.Store(tok)
					}
				}
			}
		}
	} else if err := checkLoopback(base); err != nil {
		return err
	}
	c := newClient(base, o.conns+o.seedConns, o.timeout)
	c.token.Store(o.token)
	if renew != nil {
		go renew(c)
	}
	mem := newMemProbe(c, base)
	gen := generator{run: runTag()}

	ds := &dataset{}
	needData := m[kindRead]+m[kindSearchID]+m[kindSearchPatient]+m[kindWrite] > 0
	if o.seed > 0 {
		fmt.Fprintf(out, "seeding %d resources in %d-entry transactions with %d clients\n", o.seed, o.bundle, o.seedConns)
		start := time.Now()
		last := start
		seedCtx, cancelSeed := context.WithTimeout(ctx, o.seedLimit)
		ds, err = seed(seedCtx, c, gen, o.seed, o.bundle, o.seedConns, func(done int) {
			if now := time.Now(); now.Sub(last) >= o.interval {
				last = now
				fmt.Fprintf(out, "  seeded %d/%d (%.0f resources/s)\n", done, o.seed, float64(done)/now.Sub(start).Seconds())
			}
		})
		cancelSeed()
		if err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
		el := time.Since(start)
		fmt.Fprintf(out, "seeded %d resources (%d patients) in %s: %.0f resources/s\n",
			len(ds.patients)+len(ds.observations), len(ds.patients), el.Round(time.Millisecond), float64(len(ds.patients)+len(ds.observations))/el.Seconds())
	} else if needData {
		if ds, err = discover(ctx, c); err != nil {
			return err
		}
	}
	if needData && len(ds.patients) == 0 {
		return errors.New("no seeded Patients to read or search")
	}

	stats := map[string]*kindStats{}
	for _, k := range m.kinds() {
		stats[k] = newKindStats()
	}
	load := "closed loop"
	if o.rate > 0 {
		load = fmt.Sprintf("open loop at %.0f req/s", o.rate)
	}
	fmt.Fprintf(out, "running %s for %s with %d connections (%s), mix %v\n", o.scenario, o.duration, o.conns, load, mixString(m))
	memStart := mem.sample(ctx)
	fmt.Fprintf(out, "memory at start: %s\n", memStart)

	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	p := m.picker()
	var pace *pacer
	if o.rate > 0 {
		pace = newPacer(time.Now(), o.rate)
	}
	done := make(chan struct{})
	for i := range o.conns {
		w := &worker{c: c, ds: ds, gen: gen, bundle: o.bundle, stats: stats, id: i, pace: pace,
			rnd: rand.New(rand.NewPCG(rand.Uint64(), uint64(i)))}
		go func() {
			defer func() { done <- struct{}{} }()
			w.run(runCtx, p)
		}()
	}
	start := time.Now()
	samples := []memSample{memStart}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	last := start
	running := o.conns
	for running > 0 {
		select {
		case <-done:
			running--
		case now := <-tick.C:
			s := mem.sample(ctx)
			samples = append(samples, s)
			printProgress(out, m, stats, now.Sub(start), now.Sub(last), s)
			last = now
		}
	}
	elapsed := time.Since(start)
	end := mem.sample(ctx)
	samples = append(samples, end)
	printSummary(out, o, m, stats, elapsed, samples)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// startNode runs a broker node in this process on a loopback port.
func startNode(ctx context.Context, dataDir string) (*app.Node, string, func(), error) {
	cleanup := func() {}
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "hjbload-")
		if err != nil {
			return nil, "", nil, err
		}
		dataDir = dir
		cleanup = func() { os.RemoveAll(dir) }
	}
	// HJB_* variables tune the node as they tune "hjbroker serve" (HJB_MAX_CONNS, ...).
	cfg := app.Config{DataDir: dataDir, Addr: "127.0.0.1:0"}
	if err := cfg.FromEnv(); err != nil {
		cleanup()
		return nil, "", nil, err
	}
	node, err := app.New(ctx, cfg)
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- node.Serve(sctx, func(addr string) { addrc <- addr }) }()
	select {
	case addr := <-addrc:
		return node, addr, func() {
			cancel()
			<-errc
			node.Close()
			cleanup()
		}, nil
	case err := <-errc:
		cancel()
		node.Close()
		cleanup()
		return nil, "", nil, err
	}
}

func mixString(m mix) string {
	s := ""
	for _, k := range m.kinds() {
		if s != "" {
			s += ","
		}
		s += fmt.Sprintf("%s=%d", k, m[k])
	}
	return s
}
