package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// memSample is one memory reading. Broker values come from its /metrics and are -1 when the
// endpoint is not available; Local is this process's Go heap (the same process as the broker
// when the node runs in process).
type memSample struct {
	At         time.Time
	BrokerRSS  float64
	BrokerHeap float64
	BrokerSys  float64 // memory the broker's Go runtime holds; RSS beyond it is SQLite's and the OS's
	Local      uint64
}

func (s memSample) String() string {
	return fmt.Sprintf("broker rss %s, broker heap %s, broker go sys %s, hjbload heap %s",
		mib(s.BrokerRSS), mib(s.BrokerHeap), mib(s.BrokerSys), mib(float64(s.Local)))
}

func mib(b float64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}

// memProbe reads the broker's Prometheus metrics.
type memProbe struct {
	http *http.Client // a few requests a run: net/http's client is fine here
	url  string
}

func newMemProbe(c *client, fhirBase string) *memProbe {
	u, err := url.Parse(fhirBase)
	if err != nil {
		return &memProbe{}
	}
	return &memProbe{http: &http.Client{Timeout: c.timeout}, url: u.Scheme + "://" + u.Host + "/metrics"}
}

func (p *memProbe) sample(ctx context.Context) memSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{At: time.Now(), BrokerRSS: -1, BrokerHeap: -1, BrokerSys: -1, Local: ms.HeapAlloc}
	if p.url == "" {
		return s
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return s
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s
	}
	vals := metricValues(resp.Body, "process_resident_memory_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes")
	if v, ok := vals["process_resident_memory_bytes"]; ok {
		s.BrokerRSS = v
	}
	if v, ok := vals["go_memstats_heap_alloc_bytes"]; ok {
		s.BrokerHeap = v
	}
	if v, ok := vals["go_memstats_sys_bytes"]; ok {
		s.BrokerSys = v
	}
	return s
}

// metricValues picks unlabelled samples out of the Prometheus text format.
func metricValues(r io.Reader, names ...string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, val, ok := bytes.Cut(line, []byte(" "))
		if !ok || !want[string(name)] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(string(val))[0], 64); err == nil {
			out[string(name)] = v
		}
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func printProgress(out io.Writer, m mix, stats map[string]*kindStats, sinceStart, interval time.Duration, mem memSample) {
	all := newHistogram()
	errs := 0
	var parts []string
	for _, k := range m.kinds() {
		h, e := stats[k].takeInterval()
		all.merge(h)
		errs += e
		parts = append(parts, fmt.Sprintf("%s %.0f/s p99 %s", k, float64(h.n)/interval.Seconds(), ms(h.quantile(0.99))))
	}
	fmt.Fprintf(out, "[%4.0fs] %6.0f req/s p50 %s p99 %s errors %d | %s | %s\n",
		sinceStart.Seconds(), float64(all.n)/interval.Seconds(), ms(all.quantile(0.5)), ms(all.quantile(0.99)), errs,
		strings.Join(parts, ", "), mem)
}

func printSummary(out io.Writer, o options, m mix, stats map[string]*kindStats, elapsed time.Duration, samples []memSample) {
	fmt.Fprintf(out, "\nsummary: scenario %s, %s, %d connections\n", o.scenario, elapsed.Round(time.Millisecond), o.conns)
	fmt.Fprintf(out, "%-15s %9s %9s %9s %9s %9s %9s %7s\n", "kind", "requests", "req/s", "p50", "p95", "p99", "max", "errors")
	all := newHistogram()
	errs := 0
	for _, k := range m.kinds() {
		s := stats[k]
		s.mu.Lock()
		h, e := s.total, s.errors
		all.merge(h)
		errs += e
		fmt.Fprintf(out, "%-15s %9d %9.0f %9s %9s %9s %9s %7d\n", k, h.n, float64(h.n)/elapsed.Seconds(),
			ms(h.quantile(0.5)), ms(h.quantile(0.95)), ms(h.quantile(0.99)), ms(h.max), e)
		if s.resources > 0 && k == kindTx {
			fmt.Fprintf(out, "%-15s %.0f resources/s ingested (%d resources)\n", "", float64(s.resources)/elapsed.Seconds(), s.resources)
		}
		if s.firstErr != "" {
			fmt.Fprintf(out, "%-15s first error: %s\n", "", s.firstErr)
		}
		s.mu.Unlock()
	}
	fmt.Fprintf(out, "%-15s %9d %9.0f %9s %9s %9s %9s %7d\n", "all", all.n, float64(all.n)/elapsed.Seconds(),
		ms(all.quantile(0.5)), ms(all.quantile(0.95)), ms(all.quantile(0.99)), ms(all.max), errs)
	if len(samples) == 0 {
		return
	}
	first, last := samples[0], samples[len(samples)-1]
	peak := first
	for _, s := range samples {
		peak.BrokerRSS = max(peak.BrokerRSS, s.BrokerRSS)
		peak.BrokerHeap = max(peak.BrokerHeap, s.BrokerHeap)
		peak.BrokerSys = max(peak.BrokerSys, s.BrokerSys)
		peak.Local = max(peak.Local, s.Local)
	}
	fmt.Fprintf(out, "memory start: %s\nmemory end:   %s\nmemory peak:  %s (%d samples)\n", first, last, peak, len(samples))
	// Comparing the halves of the run shows a trend that single samples, noisy with GC
	// cycles and cache fills, hide.
	if len(samples) >= 4 {
		h := len(samples) / 2
		a, b := meanSample(samples[:h]), meanSample(samples[h:])
		fmt.Fprintf(out, "memory mean, first half:  %s\nmemory mean, second half: %s\n", a, b)
	}
}

// meanSample averages samples; a broker value is -1 when any sample lacks it.
func meanSample(ss []memSample) memSample {
	var m memSample
	var local float64
	for _, s := range ss {
		m.BrokerRSS += s.BrokerRSS
		m.BrokerHeap += s.BrokerHeap
		m.BrokerSys += s.BrokerSys
		local += float64(s.Local)
	}
	n := float64(len(ss))
	m.BrokerRSS, m.BrokerHeap, m.BrokerSys, m.Local = m.BrokerRSS/n, m.BrokerHeap/n, m.BrokerSys/n, uint64(local/n)
	for _, s := range ss {
		if s.BrokerRSS < 0 {
			m.BrokerRSS = -1
		}
		if s.BrokerHeap < 0 {
			m.BrokerHeap = -1
		}
		if s.BrokerSys < 0 {
			m.BrokerSys = -1
		}
	}
	return m
}
