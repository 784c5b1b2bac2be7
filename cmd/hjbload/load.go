package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Request kinds a mix can weight.
const (
	kindRead          = "read"           // GET Patient/{id} or Observation/{id}
	kindSearchID      = "search-id"      // GET Patient?identifier=system|value
	kindSearchPatient = "search-patient" // GET Observation?subject=Patient/{id}
	kindWrite         = "write"          // POST Observation
	kindTx            = "tx"             // POST a transaction Bundle of --bundle entries
)

var allKinds = []string{kindRead, kindSearchID, kindSearchPatient, kindWrite, kindTx}

// mix is the weight of each request kind.
type mix map[string]int

// parseMix reads "read=70,search=20,write=10". "search" splits evenly between search-id and
// search-patient.
func parseMix(s string) (mix, error) {
	m := mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("mix entry %q: want kind=weight with a non-negative integer weight", part)
		}
		switch k = strings.TrimSpace(k); k {
		case "search":
			m[kindSearchID] += n - n/2
			m[kindSearchPatient] += n / 2
		case kindRead, kindSearchID, kindSearchPatient, kindWrite, kindTx:
			m[k] += n
		default:
			return nil, fmt.Errorf("mix entry %q: unknown kind %q (want read, search, search-id, search-patient, write or tx)", part, k)
		}
	}
	total := 0
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return nil, errors.New("mix has no positive weight")
	}
	return m, nil
}

// kinds lists the kinds with positive weight in a stable order.
func (m mix) kinds() []string {
	var out []string
	for _, k := range allKinds {
		if m[k] > 0 {
			out = append(out, k)
		}
	}
	return out
}

// picker draws kinds in proportion to their weights.
type picker struct {
	kinds []string
	cum   []int
}

func (m mix) picker() picker {
	var p picker
	sum := 0
	for _, k := range m.kinds() {
		sum += m[k]
		p.kinds = append(p.kinds, k)
		p.cum = append(p.cum, sum)
	}
	return p
}

func (p picker) pick(r *rand.Rand) string {
	n := r.IntN(p.cum[len(p.cum)-1])
	return p.kinds[sort.SearchInts(p.cum, n+1)]
}

// patientRef is a seeded Patient.
type patientRef struct{ ID, Identifier string }

// dataset is what the seed (or discovery) left in the store for reads and searches.
type dataset struct {
	patients     []patientRef
	observations []string
}

// client sends FHIR requests to one base URL. It is fasthttp's client, not net/http's: on a
// machine it shares with the broker, net/http's client took CPU the broker then lacked.
type client struct {
	base    string
	http    *fasthttp.Client
	timeout time.Duration
	token   atomic.Value // string: the bearer token sent with every request, renewed in long runs
}

func newClient(base string, conns int, timeout time.Duration) *client {
	return &client{base: strings.TrimSuffix(base, "/"), timeout: timeout, http: &fasthttp.Client{
		MaxConnsPerHost:     conns,
		MaxIdleConnDuration: time.Minute,
		MaxResponseBodySize: 256 << 20,
	}}
}

// do sends one request and returns the status and the whole body.
func (c *client) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	url := c.base
	if path != "" {
		url += "/" + path
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Accept", "application/fhir+json")
	if tok, _ := c.token.Load().(string); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.SetContentType("application/fhir+json")
		req.SetBodyRaw(body)
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.http.DoDeadline(req, resp, deadline); err != nil {
		if d, ok := ctx.Deadline(); ctx.Err() != nil || (ok && !time.Now().Before(d)) {
			// The run ended while the request was out (its context may not say so for a
			// moment yet): not a failure of the broker's.
			return 0, nil, context.DeadlineExceeded
		}
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// expect turns an unexpected status into an error that shows the start of the body.
func expect(status int, body []byte, err error, want int) error {
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("status %d, want %d: %.200s", status, want, body)
	}
	return nil
}

// transactionLocations posts a transaction Bundle and returns the entries' locations.
func (c *client) transaction(ctx context.Context, bundle []byte) ([]string, error) {
	status, body, err := c.do(ctx, http.MethodPost, "", bundle)
	if err := expect(status, body, err, http.StatusOK); err != nil {
		return nil, err
	}
	var resp struct {
		Entry []struct {
			Response struct {
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("transaction response: %w", err)
	}
	locs := make([]string, len(resp.Entry))
	for i, e := range resp.Entry {
		locs[i] = e.Response.Location
	}
	return locs, nil
}

// seed writes n resources in transaction Bundles of size entries from conns concurrent clients
// and returns what it wrote, for reads and searches.
func seed(ctx context.Context, c *client, g generator, n, size, conns int, progress func(done int)) (*dataset, error) {
	bundles := (n + size - 1) / size
	var next atomic.Int64
	var mu sync.Mutex
	ds := &dataset{}
	done := 0
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b := int(next.Add(1)) - 1
				if b >= bundles || ctx.Err() != nil {
					return
				}
				tag := "s" + strconv.Itoa(b)
				entries := min(size, n-b*size)
				locs, err := c.transaction(ctx, g.bundle(tag, entries))
				if err != nil {
					errc <- fmt.Errorf("seed bundle %d: %w", b, err)
					return
				}
				mu.Lock()
				for i, loc := range locs {
					typ, id := splitLocation(loc)
					switch typ {
					case "Patient":
						ds.patients = append(ds.patients, patientRef{ID: id, Identifier: g.patientIdentifier(tag, i)})
					case "Observation":
						ds.observations = append(ds.observations, id)
					}
				}
				done += len(locs)
				d := done
				mu.Unlock()
				if progress != nil {
					progress(d)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return ds, ctx.Err()
}

// splitLocation reads "Type/id/_history/n".
func splitLocation(loc string) (typ, id string) {
	parts := strings.Split(loc, "/")
	if len(parts) < 2 {
		return "", ""
	}
	return parts[0], parts[1]
}

// discoverPages bounds how many search pages discover reads per type.
const discoverPages = 10

// discover finds existing Patients and Observations when nothing is seeded, following
// next links for up to discoverPages pages of 1000 per type.
func discover(ctx context.Context, c *client) (*dataset, error) {
	ds := &dataset{}
	for _, typ := range []string{"Patient", "Observation"} {
		path := typ + "?_count=1000"
		for page := 0; page < discoverPages && path != ""; page++ {
			status, body, err := c.do(ctx, http.MethodGet, path, nil)
			if err := expect(status, body, err, http.StatusOK); err != nil {
				return nil, fmt.Errorf("listing %s: %w", typ, err)
			}
			var bundle struct {
				Link []struct {
					Relation string `json:"relation"`
					URL      string `json:"url"`
				} `json:"link"`
				Entry []struct {
					Resource struct {
						ID         string `json:"id"`
						Identifier []struct {
							System, Value string
						} `json:"identifier"`
					} `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &bundle); err != nil {
				return nil, fmt.Errorf("listing %s: %w", typ, err)
			}
			for _, e := range bundle.Entry {
				if typ == "Observation" {
					ds.observations = append(ds.observations, e.Resource.ID)
					continue
				}
				for _, idf := range e.Resource.Identifier {
					if idf.System == idSystem {
						ds.patients = append(ds.patients, patientRef{ID: e.Resource.ID, Identifier: idf.Value})
						break
					}
				}
			}
			path = ""
			for _, l := range bundle.Link {
				if l.Relation == "next" {
					path = strings.TrimPrefix(strings.TrimPrefix(l.URL, c.base), "/")
				}
			}
		}
	}
	if len(ds.patients) == 0 {
		return nil, fmt.Errorf("the store has no Patient with an identifier in %s; seed it with --seed N", idSystem)
	}
	return ds, nil
}

// pacer hands out request start times at a fixed total rate (open-loop load). Latency is
// measured from the scheduled start, so time spent waiting behind a slow server counts
// instead of being hidden by the client slowing down.
type pacer struct {
	start time.Time
	every time.Duration
	next  atomic.Int64
}

func newPacer(start time.Time, rate float64) *pacer {
	return &pacer{start: start, every: time.Duration(float64(time.Second) / rate)}
}

// slot returns the next scheduled start, waiting for it; ok is false when ctx ends first.
func (p *pacer) slot(ctx context.Context) (time.Time, bool) {
	at := p.start.Add(time.Duration(p.next.Add(1)-1) * p.every)
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return at, false
		}
	}
	return at, ctx.Err() == nil
}

// worker runs requests of kinds drawn from a picker until ctx ends.
type worker struct {
	c      *client
	ds     *dataset
	gen    generator
	bundle int
	stats  map[string]*kindStats
	rnd    *rand.Rand
	id     int
	seq    int
	pace   *pacer // nil: closed loop, each connection sends as soon as its last answer arrives
}

func (w *worker) run(ctx context.Context, p picker) {
	for ctx.Err() == nil {
		kind := p.pick(w.rnd)
		start := time.Now()
		if w.pace != nil {
			var ok bool
			if start, ok = w.pace.slot(ctx); !ok {
				return
			}
		}
		resources, err := w.one(ctx, kind)
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return // a request cut short by the end of the run says nothing about the server
		}
		w.stats[kind].record(time.Since(start), resources, err)
	}
}

// one performs a request of the kind and checks that its answer is the expected one.
func (w *worker) one(ctx context.Context, kind string) (int, error) {
	w.seq++
	if kind == kindTx {
		tag := fmt.Sprintf("t%d-%d", w.id, w.seq)
		locs, err := w.c.transaction(ctx, w.gen.bundle(tag, w.bundle))
		return len(locs), err
	}
	// Every other kind works on a seeded Patient.
	pat := w.ds.patients[w.rnd.IntN(len(w.ds.patients))]
	switch kind {
	case kindRead:
		path := "Patient/" + pat.ID
		if len(w.ds.observations) > 0 && w.rnd.IntN(2) == 0 {
			path = "Observation/" + w.ds.observations[w.rnd.IntN(len(w.ds.observations))]
		}
		status, body, err := w.c.do(ctx, http.MethodGet, path, nil)
		return 0, expect(status, body, err, http.StatusOK)
	case kindSearchID:
		status, body, err := w.c.do(ctx, http.MethodGet, "Patient?identifier="+idSystem+"|"+pat.Identifier, nil)
		if err := expect(status, body, err, http.StatusOK); err != nil {
			return 0, err
		}
		if !bytes.Contains(body, []byte(`"id":"`+pat.ID+`"`)) {
			return 0, fmt.Errorf("identifier search for %s did not return Patient/%s", pat.Identifier, pat.ID)
		}
		return 0, nil
	case kindSearchPatient:
		status, body, err := w.c.do(ctx, http.MethodGet, "Observation?subject=Patient/"+pat.ID, nil)
		if err := expect(status, body, err, http.StatusOK); err != nil {
			return 0, err
		}
		if !bytes.Contains(body, []byte(`"Patient/`+pat.ID+`"`)) {
			return 0, fmt.Errorf("subject search for Patient/%s returned no Observation of that patient", pat.ID)
		}
		return 0, nil
	case kindWrite:
		tag := fmt.Sprintf("w%d", w.id)
		body := mustJSON(w.gen.observation(tag, w.seq, "Patient/"+pat.ID))
		status, resp, err := w.c.do(ctx, http.MethodPost, "Observation", body)
		return 1, expect(status, resp, err, http.StatusCreated)
	}
	return 0, fmt.Errorf("unknown request kind %q", kind)
}
