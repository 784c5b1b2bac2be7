package main

import (
	"math"
	"sync"
	"time"
)

// histogram counts latencies in logarithmic buckets 2% wide, so quantiles cost a fixed amount
// of memory however long the run is (a 10-minute run must not grow the load generator's heap).
type histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
}

const (
	histGrowth  = 1.02
	histBuckets = 1100 // 1µs·1.02^1100 is beyond ten minutes
)

var logGrowth = math.Log(histGrowth)

func newHistogram() *histogram { return &histogram{counts: make([]uint64, histBuckets)} }

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Ceil(math.Log(us) / logGrowth))
	return min(i, histBuckets-1)
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding the q-th latency (at most 2% high),
// capped by the largest latency seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(math.Pow(histGrowth, float64(i))*float64(time.Microsecond)), h.max)
		}
	}
	return h.max
}

// kindStats accumulates one request kind's results, for the whole run and for the current
// progress interval.
type kindStats struct {
	mu        sync.Mutex
	total     *histogram
	interval  *histogram
	errors    int
	intErrors int
	firstErr  string
	resources int // resources written, for ingest throughput
}

func newKindStats() *kindStats {
	return &kindStats{total: newHistogram(), interval: newHistogram()}
}

func (k *kindStats) record(d time.Duration, resources int, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.total.add(d)
	k.interval.add(d)
	if err != nil {
		k.errors++
		k.intErrors++
		if k.firstErr == "" {
			k.firstErr = err.Error()
		}
		return
	}
	k.resources += resources
}

// takeInterval returns the interval's histogram and error count and starts a new interval.
func (k *kindStats) takeInterval() (*histogram, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, e := k.interval, k.intErrors
	k.interval, k.intErrors = newHistogram(), 0
	return h, e
}
