package app_test

// Benchmarks of the embedded (SQLite) node through its HTTP handler, so the numbers include
// routing, media-type checks, JSON encoding and metrics, as a client sees them. They are slow
// (the read benchmarks seed 100,000 resources once and cache the data directory), so they skip
// under -short. docs/benchmarks.md records results and how to reproduce them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/engine"
)

const (
	// benchSeedVersion and app.Version key the cached seed directory; change it when the
	// generated resources change so a stale cache is not reused.
	benchSeedVersion   = "v3"
	benchSeedResources = 100_000
	benchSeedBundle    = 100
	// benchObsPerPatient Observations follow each Patient in a seed Bundle.
	benchObsPerPatient = 4
	benchIDSystem      = "https://hjbroker.example/Id/bench"
	benchReadConns     = 50
)

// benchBundle builds one transaction Bundle of n entries: Patients, each followed by up to
// benchObsPerPatient Observations that reference it by urn:uuid. Identifier values start with
// tag so every Bundle is distinct.
func benchBundle(tag string, n int) []byte {
	entries := make([]any, 0, n)
	var patient string
	for i := 0; len(entries) < n; i++ {
		if i%(benchObsPerPatient+1) == 0 {
			patient = fmt.Sprintf("urn:uuid:%s", benchUUID(tag, i))
			entries = append(entries, map[string]any{
				"fullUrl": patient,
				"resource": map[string]any{
					"resourceType": "Patient",
					"identifier":   []any{map[string]any{"system": benchIDSystem, "value": fmt.Sprintf("%s-p%d", tag, i)}},
					"name":         []any{map[string]any{"family": "Bench", "given": []any{fmt.Sprintf("P%d", i)}}},
					"gender":       []string{"male", "female"}[i%2],
					"birthDate":    fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28),
				},
				"request": map[string]any{"method": "POST", "url": "Patient"},
			})
			continue
		}
		entries = append(entries, map[string]any{
			"fullUrl": "urn:uuid:" + benchUUID(tag, i),
			"resource": map[string]any{
				"resourceType": "Observation",
				"status":       "final",
				"identifier":   []any{map[string]any{"system": benchIDSystem, "value": fmt.Sprintf("%s-o%d", tag, i)}},
				"code": map[string]any{"coding": []any{map[string]any{
					"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}},
				"subject":           map[string]any{"reference": patient},
				"effectiveDateTime": fmt.Sprintf("2025-%02d-%02dT10:%02d:00Z", 1+i%12, 1+i%28, i%60),
				"valueQuantity": map[string]any{"value": 60 + i%40, "unit": "beats/minute",
					"system": "http://unitsofmeasure.org", "code": "/min"},
			},
			"request": map[string]any{"method": "POST", "url": "Observation"},
		})
	}
	raw, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		panic(err)
	}
	return raw
}

// benchUUID makes a syntactically valid, unique-per-(tag, i) UUID for fullUrls.
func benchUUID(tag string, i int) string {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(tag) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(h), uint16(h>>32), i>>12&0xfff, i&0xfff, h>>16&0xffffffffffff)
}

// benchSeed is a cached store of benchSeedResources resources and the ids needed to query it.
type benchSeed struct {
	DataDir     string   `json:"-"`
	Patients    []string `json:"patients"`    // Patient ids
	Identifiers []string `json:"identifiers"` // Patient identifier values, same order
	Resources   int      `json:"resources"`
}

// benchSeedStore returns a private copy of the cached seeded store, building the cache on
// first use (about a minute). Every benchmark gets its own copy because serving requests
// writes to the store (the audit trail): a shared cache would grow with every run and make
// later runs slower than earlier ones.
func benchSeedStore(b *testing.B) benchSeed {
	b.Helper()
	s := benchSeedCache(b)
	s.DataDir = benchCopyDir(b, s.DataDir, b.TempDir())
	return s
}

// benchCopyDir copies the regular files of src into dst and returns dst.
func benchCopyDir(b *testing.B, src, dst string) string {
	b.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := benchCopyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
	return dst
}

func benchCopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	// Written out before the clock starts: otherwise the broker's first commits wait while
	// the file system writes back hundreds of megabytes of copy.
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// benchSeedCache returns the cached seeded store, building it on first use.
func benchSeedCache(b *testing.B) benchSeed {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("hjbroker-bench-%s-%s-%d", app.Version, benchSeedVersion, benchSeedResources))
	manifest := filepath.Join(dir, "seed.json")
	if raw, err := os.ReadFile(manifest); err == nil {
		var s benchSeed
		if err := json.Unmarshal(raw, &s); err == nil && s.Resources == benchSeedResources {
			s.DataDir = filepath.Join(dir, "data")
			return s
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	s := benchSeed{DataDir: filepath.Join(dir, "data")}
	ctx := context.Background()
	node, err := app.New(ctx, app.Config{DataDir: s.DataDir})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	start := time.Now()
	for n := 0; n < benchSeedResources/benchSeedBundle; n++ {
		tag := fmt.Sprintf("seed%d", n)
		resp := node.Engine.Handle(ctx, &engine.Request{
			Method: http.MethodPost,
			Header: http.Header{"Content-Type": {"application/fhir+json"}},
			Body:   benchBundle(tag, benchSeedBundle),
			Base:   "http://bench/fhir",
		})
		if resp.Status != http.StatusOK {
			b.Fatalf("seed bundle %d: status %d: %v", n, resp.Status, resp.Resource)
		}
		entries, _ := resp.Resource["entry"].([]any)
		for i, e := range entries {
			loc, _ := e.(map[string]any)["response"].(map[string]any)["location"].(string)
			if id, ok := strings.CutPrefix(loc, "Patient/"); ok {
				id, _, _ = strings.Cut(id, "/")
				s.Patients = append(s.Patients, id)
				s.Identifiers = append(s.Identifiers, fmt.Sprintf("%s-p%d", tag, i))
			}
		}
		s.Resources += len(entries)
	}
	b.Logf("seeded %d resources (%d patients) in %s", s.Resources, len(s.Patients), time.Since(start).Round(time.Second))
	raw, err := json.Marshal(s)
	if err != nil {
		b.Fatal(err)
	}
	// The manifest is written last: its presence marks a complete seed.
	if err := os.WriteFile(manifest, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchServer serves a node on dataDir over loopback HTTP until the benchmark ends.
func benchServer(b *testing.B, dataDir string) (base string, client *benchClient) {
	b.Helper()
	node, err := app.New(context.Background(), app.Config{DataDir: dataDir})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(node.Handler)
	c := &fasthttp.Client{MaxConnsPerHost: benchReadConns * 2, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		MaxResponseBodySize: 64 << 20}
	b.Cleanup(func() {
		c.CloseIdleConnections()
		ts.Close()
		node.Close()
	})
	// Requests go as the operator client, authenticated and audited like any other.
	tok, err := node.Token(context.Background(), "operator")
	if err != nil {
		b.Fatal(err)
	}
	return ts.URL + "/fhir", &benchClient{c: c, auth: "Bearer " + tok}
}

// benchClient sends the benchmarks' requests. It is fasthttp's client rather than net/http's
// because client and broker share the machine's two cores: net/http's client took 30% of
// the CPU of a read benchmark, which the broker then could not use.
type benchClient struct {
	c    *fasthttp.Client
	auth string
}

// benchDo sends one request and reads the body; it returns the status and the body.
func benchDo(client *benchClient, method, url string, body []byte) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", client.auth)
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.SetContentType("application/fhir+json")
		req.SetBodyRaw(body)
	}
	if err := client.c.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// benchLatencies collects per-request durations from parallel goroutines.
type benchLatencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *benchLatencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// report adds p50/p99 latency (ms) and requests/s to the benchmark output.
func (l *benchLatencies) report(b *testing.B) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	b.ReportMetric(benchQuantileMS(l.all, 0.50), "p50-ms")
	b.ReportMetric(benchQuantileMS(l.all, 0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// benchQuantileMS is the p-quantile of sorted durations, in milliseconds.
func benchQuantileMS(sorted []time.Duration, p float64) float64 {
	return float64(sorted[int(p*float64(len(sorted)-1))]) / float64(time.Millisecond)
}

// benchRun runs fn from conns concurrent clients (closed loop: each sends its next request
// when the last one is answered) and reports latency percentiles. fn gets a distinct
// sequence number per request.
func benchRun(b *testing.B, conns int, fn func(seq int) error) {
	b.Helper()
	var lat benchLatencies
	var seq atomic.Int64
	var failed atomic.Value
	one := func(local []time.Duration) []time.Duration {
		t := time.Now()
		if err := fn(int(seq.Add(1))); err != nil {
			failed.CompareAndSwap(nil, err)
		}
		return append(local, time.Since(t))
	}
	b.ResetTimer()
	if conns == 1 {
		local := make([]time.Duration, 0, b.N)
		for range b.N {
			local = one(local)
		}
		lat.add(local)
	} else {
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((conns + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			local := make([]time.Duration, 0, 1024)
			for pb.Next() {
				local = one(local)
			}
			lat.add(local)
		})
	}
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	lat.report(b)
}

// benchForConns runs a benchmark once per client concurrency as sub-benchmarks "conns=N".
func benchForConns(b *testing.B, conns []int, fn func(b *testing.B, conns int)) {
	for _, c := range conns {
		b.Run(fmt.Sprintf("conns=%d", c), func(b *testing.B) { fn(b, c) })
	}
}

func benchSkipShort(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark skipped under -short")
	}
}

func BenchmarkTransaction2(b *testing.B)   { benchTransaction(b, 2) }
func BenchmarkTransaction100(b *testing.B) { benchTransaction(b, 100) }

// benchTransaction posts transaction Bundles of size entries from 2×GOMAXPROCS concurrent clients
// to a fresh store and reports resources ingested per second.
func benchTransaction(b *testing.B, size int) {
	benchSkipShort(b)
	base, client := benchServer(b, b.TempDir())
	run := fmt.Sprintf("tx%d-%d", size, time.Now().UnixNano())
	bundles := make(chan []byte, 8)
	stop := make(chan struct{})
	defer close(stop)
	// Bundles are built off the clock by a producer, so encoding them is not measured.
	go func() {
		for i := 0; ; i++ {
			select {
			case bundles <- benchBundle(fmt.Sprintf("%s-%d", run, i), size):
			case <-stop:
				return
			}
		}
	}()
	var failed atomic.Value
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			status, body, err := benchDo(client, http.MethodPost, base, <-bundles)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("transaction: status %d: %.300s", status, body)
			}
			if err != nil {
				failed.CompareAndSwap(nil, err)
			}
		}
	})
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "resources/s")
}

func BenchmarkReadByID(b *testing.B) {
	benchSkipShort(b)
	s := benchSeedStore(b)
	base, client := benchServer(b, s.DataDir)
	benchWarm(b, client, base, s.Patients)
	// A sub-benchmark, so that the store is copied and opened once rather than once per b.N.
	benchForConns(b, []int{benchReadConns}, func(b *testing.B, conns int) {
		benchRun(b, conns, benchReadPatient(client, base, s.Patients))
	})
}

// benchReadPatient returns a request that reads the i-th of ids (cycling) and wants 200.
func benchReadPatient(client *benchClient, base string, ids []string) func(i int) error {
	return func(i int) error {
		id := ids[i%len(ids)]
		status, body, err := benchDo(client, http.MethodGet, base+"/Patient/"+id, nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("read Patient/%s: status %d: %.300s", id, status, body)
		}
		return err
	}
}

// benchWarm reads every patient once before the clock starts, so the read benchmarks measure
// a broker whose read cache holds the store (100,000 resources fit the default 64 MiB),
// as a broker does once it has served a while (docs/benchmarks.md gives the cold figures).
func benchWarm(b *testing.B, client *benchClient, base string, ids []string) {
	b.Helper()
	for _, id := range ids {
		if status, body, err := benchDo(client, http.MethodGet, base+"/Patient/"+id, nil); err != nil || status != http.StatusOK {
			b.Fatalf("warming: read Patient/%s: %d %v %.300s", id, status, err, body)
		}
	}
}

// benchReadRate is the offered load of BenchmarkReadByIDRate: the read target's 10,000
// requests/s.
const benchReadRate = 10_000

// BenchmarkReadByIDRate offers reads at a fixed rate (open loop, as wrk2 does) from
// benchReadConns connections (benchOpenLoop).
func BenchmarkReadByIDRate(b *testing.B) {
	benchSkipShort(b)
	s := benchSeedStore(b)
	base, client := benchServer(b, s.DataDir)
	benchWarm(b, client, base, s.Patients)
	benchForConns(b, []int{benchReadConns}, func(b *testing.B, conns int) {
		benchOpenLoop(b, conns, benchReadPatient(client, base, s.Patients))
	})
}

// BenchmarkReadFloorRate is BenchmarkReadByIDRate against a handler that answers every
// request at once with a Patient-sized body: the same client, pacing, loopback and Go runtime,
// and none of the broker. It is the least latency this machine can show for the read target,
// so it tells how much of a read's tail is the broker's and how much the machine's.
func BenchmarkReadFloorRate(b *testing.B) {
	benchSkipShort(b)
	body := []byte(`{"resourceType":"Patient","id":"` + strings.Repeat("0", 36) + `","meta":{"versionId":"1",` +
		`"lastUpdated":"2026-12-01T10:00:00.000Z"},` + strings.Repeat(" ", 220) + `}`)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("ETag", `W/"1"`)
		w.Write(body) //nolint:errcheck
	}))
	b.Cleanup(ts.Close)
	client := &benchClient{c: &fasthttp.Client{MaxConnsPerHost: benchReadConns * 2}, auth: "Bearer none"}
	benchForConns(b, []int{benchReadConns}, func(b *testing.B, conns int) {
		benchOpenLoop(b, conns, func(int) error {
			status, _, err := benchDo(client, http.MethodGet, ts.URL+"/fhir/Patient/x", nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			return err
		})
	})
}

// benchOpenLoop sends b.N requests at benchReadRate from conns connections. Each request has
// a scheduled start, i/rate after the first; a free connection sends the next due request,
// and latency counts from the scheduled start, so time spent waiting for a connection is
// included (no coordinated omission). It reports the achieved rate next to the offered one
// (a server that cannot keep up falls behind and its latencies grow without bound), and how
// late the client itself sent requests that were not waiting for a connection
// (send-late-p99-ms): Go's timers oversleep by up to a millisecond on an idle machine, and
// that lateness is in every latency here.
func benchOpenLoop(b *testing.B, conns int, send func(i int) error) {
	interval := time.Second / benchReadRate
	var next atomic.Int64
	var failed atomic.Value
	lat := make([]time.Duration, b.N)
	var slept benchLatencies // lateness of the sends that slept until they were due
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var late []time.Duration
			defer func() { slept.add(late) }()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
					late = append(late, time.Since(due))
				}
				if err := send(i); err != nil {
					failed.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(due)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(benchQuantileMS(lat, 0.50), "p50-ms")
	b.ReportMetric(benchQuantileMS(lat, 0.99), "p99-ms")
	b.ReportMetric(benchQuantileMS(lat, 0.999), "p99.9-ms")
	if len(slept.all) > 0 {
		slices.Sort(slept.all)
		b.ReportMetric(benchQuantileMS(slept.all, 0.99), "send-late-p99-ms")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(benchReadRate, "offered-req/s")
}

// Searches run alone (conns=1: the latency of one query) and under benchReadConns clients.
var benchSearchConns = []int{1, benchReadConns}

func BenchmarkSearchIdentifier(b *testing.B) {
	benchSkipShort(b)
	s := benchSeedStore(b)
	base, client := benchServer(b, s.DataDir)
	benchCheckTotal(b, client, base+"/Patient?identifier="+benchIDSystem+"|"+s.Identifiers[0], 1)
	benchForConns(b, benchSearchConns, func(b *testing.B, conns int) {
		benchRun(b, conns, func(seq int) error {
			v := s.Identifiers[seq%len(s.Identifiers)]
			status, body, err := benchDo(client, http.MethodGet, base+"/Patient?identifier="+benchIDSystem+"|"+v, nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("search identifier %s: status %d: %.300s", v, status, body)
			}
			return err
		})
	})
}

func BenchmarkSearchByPatient(b *testing.B) {
	benchSkipShort(b)
	s := benchSeedStore(b)
	base, client := benchServer(b, s.DataDir)
	benchCheckTotal(b, client, base+"/Observation?subject=Patient/"+s.Patients[0], benchObsPerPatient)
	benchForConns(b, benchSearchConns, func(b *testing.B, conns int) {
		benchRun(b, conns, func(seq int) error {
			id := s.Patients[seq%len(s.Patients)]
			status, body, err := benchDo(client, http.MethodGet, base+"/Observation?subject=Patient/"+id, nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("search subject=Patient/%s: status %d: %.300s", id, status, body)
			}
			return err
		})
	})
}

// benchCheckTotal makes sure a benchmarked search finds what the seed put there, so a fast but
// wrong query cannot pass as a result.
func benchCheckTotal(b *testing.B, client *benchClient, url string, want int) {
	b.Helper()
	status, body, err := benchDo(client, http.MethodGet, url, nil)
	if err != nil || status != http.StatusOK {
		b.Fatalf("GET %s: %d %v %.300s", url, status, err, body)
	}
	var bundle struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil {
		b.Fatal(err)
	}
	if len(bundle.Entry) != want {
		b.Fatalf("GET %s: %d entries, want %d", url, len(bundle.Entry), want)
	}
}
