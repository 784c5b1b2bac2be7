package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    mix
		wantErr bool
	}{
		{in: "read=70,search=20,write=10", want: mix{kindRead: 70, kindSearchID: 10, kindSearchPatient: 10, kindWrite: 10}},
		{in: "search=5", want: mix{kindSearchID: 3, kindSearchPatient: 2}},
		{in: " tx=1 , search-id=2,search-patient=3", want: mix{kindTx: 1, kindSearchID: 2, kindSearchPatient: 3}},
		{in: "read=70,bogus=1", wantErr: true},
		{in: "read=-1", wantErr: true},
		{in: "read", wantErr: true},
		{in: "read=0", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseMix(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseMix(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("parseMix(%q) = %v, want %v", tt.in, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("parseMix(%q)[%s] = %d, want %d", tt.in, k, got[k], v)
			}
		}
	}
}

func TestPickerFollowsWeights(t *testing.T) {
	p := mix{kindRead: 70, kindSearchID: 20, kindWrite: 10}.picker()
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 100000
	for range n {
		counts[p.pick(r)]++
	}
	for k, w := range map[string]float64{kindRead: 0.7, kindSearchID: 0.2, kindWrite: 0.1} {
		if got := float64(counts[k]) / n; got < w-0.01 || got > w+0.01 {
			t.Errorf("%s drawn %.3f of the time, want %.2f", k, got, w)
		}
	}
	if len(counts) != 3 {
		t.Errorf("drew kinds %v, want only read, search-id and write", counts)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tt.q)
		// Buckets are 2% wide and quantiles report their upper bound.
		if got < tt.want || float64(got) > float64(tt.want)*1.021 {
			t.Errorf("quantile(%v) = %v, want %v to +2%%", tt.q, got, tt.want)
		}
	}
	if h.max != time.Second || h.n != 1000 {
		t.Errorf("max %v n %d, want 1s and 1000", h.max, h.n)
	}
	o := newHistogram()
	o.add(5 * time.Second)
	h.merge(o)
	if h.quantile(1) != 5*time.Second || h.n != 1001 {
		t.Errorf("after merge: max quantile %v n %d, want 5s and 1001", h.quantile(1), h.n)
	}
	if newHistogram().quantile(0.99) != 0 {
		t.Error("empty histogram quantile is not 0")
	}
}

func TestMetricValues(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2345678e+08
go_memstats_heap_alloc_bytes 4.2e+07
go_memstats_heap_alloc_bytes_total 9
hjbroker_fhir_requests_total{interaction="read"} 3
`
	got := metricValues(strings.NewReader(text), "process_resident_memory_bytes", "go_memstats_heap_alloc_bytes")
	if got["process_resident_memory_bytes"] != 123456780 || got["go_memstats_heap_alloc_bytes"] != 42e6 || len(got) != 2 {
		t.Errorf("metricValues = %v", got)
	}
}

func TestCheckLoopback(t *testing.T) {
	for target, ok := range map[string]bool{
		"http://127.0.0.1:8080/fhir":  true,
		"http://localhost:8080/fhir":  true,
		"http://[::1]:8080/fhir":      true,
		"http://10.0.0.5:8080/fhir":   false,
		"http://example.org/fhir":     false,
		"ftp://127.0.0.1/fhir":        false,
		"127.0.0.1:8080":              false,
		"https://127.0.0.2:8443/fhir": true,
	} {
		if err := checkLoopback(target); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok %v", target, err, ok)
		}
	}
}

func TestFakeUUIDShape(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := range 5000 {
		u := fakeUUID("tag", i)
		if !re.MatchString(u) {
			t.Fatalf("fakeUUID(tag, %d) = %q is not a version-4 UUID", i, u)
		}
		if seen[u] {
			t.Fatalf("fakeUUID(tag, %d) = %q repeats", i, u)
		}
		seen[u] = true
	}
}

// TestRunInProcess drives a short mixed run against an in-process node and checks that every
// kind ran without errors and the seed is what was asked for.
func TestRunInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker node")
	}
	var out bytes.Buffer
	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--seed", "150", "--bundle", "50", "--duration", "2s", "--interval", "1s",
		"--conns", "4", "--mix", "read=40,search=40,write=10,tx=10"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	if !strings.Contains(text, "seeded 150 resources (30 patients)") {
		t.Errorf("seed line missing or wrong:\n%s", text)
	}
	rows := regexp.MustCompile(`(?m)^(read|search-id|search-patient|write|tx|all)\s+(\d+)\s.*\s(\d+)$`).FindAllStringSubmatch(text, -1)
	if len(rows) != 6 {
		t.Fatalf("want 6 summary rows, got %d:\n%s", len(rows), text)
	}
	for _, r := range rows {
		if n, _ := strconv.Atoi(r[2]); n == 0 {
			t.Errorf("%s: no requests\n%s", r[1], text)
		}
		if r[3] != "0" {
			t.Errorf("%s: %s errors\n%s", r[1], r[3], text)
		}
	}
	if !strings.Contains(text, "resources/s ingested") || !strings.Contains(text, "memory end:") {
		t.Errorf("summary lacks ingest rate or memory:\n%s", text)
	}

	// Without a seed the run finds the Patients already stored and searches them.
	out.Reset()
	args = []string{"--data-dir", dir, "--seed", "0", "--duration", "1s", "--conns", "2", "--scenario", "search"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run on the existing store: %v\n%s", err, out.String())
	}
	rows = regexp.MustCompile(`(?m)^(search-id|search-patient)\s+(\d+)\s.*\s(\d+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 2 || rows[0][2] == "0" || rows[0][3] != "0" || rows[1][3] != "0" {
		t.Errorf("search run on the existing store:\n%s", out.String())
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"--conns", "0"},
		{"--duration", "0s"},
		{"--seed", "-1"},
		{"extra"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted bad flags", args)
		}
	}
	if _, err := scenarioMix(options{scenario: "soak"}); err == nil {
		t.Error("unknown scenario accepted")
	}
}

func TestPacerSchedulesAtRate(t *testing.T) {
	start := time.Now()
	p := newPacer(start, 200) // one slot every 5ms
	for i := range 5 {
		at, ok := p.slot(context.Background())
		if !ok || !at.Equal(start.Add(time.Duration(i)*5*time.Millisecond)) {
			t.Fatalf("slot %d at %v ok %v, want start+%dms", i, at.Sub(start), ok, i*5)
		}
		if time.Now().Before(at) {
			t.Fatalf("slot %d returned before its time", i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := newPacer(time.Now().Add(time.Hour), 1)
	if _, ok := slow.slot(ctx); ok {
		t.Error("slot waited through a cancelled context")
	}
}

func TestMeanSample(t *testing.T) {
	got := meanSample([]memSample{
		{BrokerRSS: 100, BrokerHeap: 10, BrokerSys: 20, Local: 4},
		{BrokerRSS: 300, BrokerHeap: 30, BrokerSys: -1, Local: 8},
	})
	if got.BrokerRSS != 200 || got.BrokerHeap != 20 || got.BrokerSys != -1 || got.Local != 6 {
		t.Errorf("meanSample = %+v, want rss 200 heap 20 sys -1 (one sample lacked it) local 6", got)
	}
}

// The ingest scenario needs no seed: it only posts transactions.
func TestRunIngestWithoutSeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker node")
	}
	var out bytes.Buffer
	args := []string{"--data-dir", t.TempDir(), "--scenario", "ingest", "--bundle", "10", "--duration", "1s", "--conns", "2"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	if strings.Contains(text, "seeding") {
		t.Errorf("ingest seeded without --seed:\n%s", text)
	}
	row := regexp.MustCompile(`(?m)^tx\s+(\d+)\s.*\s(\d+)$`).FindStringSubmatch(text)
	if row == nil || row[1] == "0" || row[2] != "0" {
		t.Errorf("want transactions without errors:\n%s", text)
	}
}
