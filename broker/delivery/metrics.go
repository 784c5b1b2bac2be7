package delivery

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hjbroker/hjbroker/broker/queue"
)

// Outcomes counted by hjbroker_deliveries_total.
const (
	outcomeDelivered = "delivered"
	outcomeRetried   = "retried"
	outcomeDead      = "dead"
	outcomeWithheld  = "withheld"
)

type metrics struct {
	deliveries *prometheus.CounterVec   // endpoint, outcome
	failures   *prometheus.CounterVec   // endpoint, kind (transient|permanent)
	attempt    *prometheus.HistogramVec // endpoint: duration of one attempt
	latency    *prometheus.HistogramVec // endpoint: creation to delivery
	attempts   *prometheus.HistogramVec // endpoint: attempts a finished delivery took
	failing    *prometheus.GaugeVec     // endpoint: 1 while failing
}

func newMetrics() *metrics {
	return &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hjbroker_deliveries_total", Help: "Delivery attempts finished, by endpoint and outcome (delivered, retried, dead, withheld).",
		}, []string{"endpoint", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hjbroker_delivery_failures_total", Help: "Failed delivery attempts by endpoint and kind (transient, permanent).",
		}, []string{"endpoint", "kind"}),
		attempt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hjbroker_delivery_attempt_seconds", Help: "Duration of one delivery attempt to an endpoint.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hjbroker_delivery_latency_seconds", Help: "Time from the routed change to its successful delivery.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 120, 600, 3600},
		}, []string{"endpoint"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hjbroker_delivery_attempts", Help: "Attempts a delivery took before it was delivered or dead-lettered.",
			Buckets: []float64{1, 2, 3, 5, 8, 13, 21},
		}, []string{"endpoint"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hjbroker_endpoint_failing", Help: "1 while an endpoint's deliveries are failing, 0 once it recovers.",
		}, []string{"endpoint"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.deliveries, m.failures, m.attempt, m.latency, m.attempts, m.failing}
}

// queueCollector reads queue depth, oldest item age and dead letters per destination at
// scrape time, so the figures are those of the shared queue, whichever node is scraped.
type queueCollector struct {
	q     queue.Queue
	now   func() time.Time
	depth *prometheus.Desc
	age   *prometheus.Desc
	dead  *prometheus.Desc
}

func newQueueCollector(q queue.Queue, now func() time.Time) *queueCollector {
	return &queueCollector{
		q: q, now: now,
		depth: prometheus.NewDesc("hjbroker_queue_depth", "Deliveries queued for an endpoint and not yet finished (dead letters excluded).", []string{"endpoint"}, nil),
		age:   prometheus.NewDesc("hjbroker_queue_oldest_age_seconds", "Age of the oldest unfinished delivery queued for an endpoint (0 when none).", []string{"endpoint"}, nil),
		dead:  prometheus.NewDesc("hjbroker_queue_dead_letters", "Dead letters held for an endpoint.", []string{"endpoint"}, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
	ch <- c.dead
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dests, err := c.q.Destinations(ctx)
	if err != nil {
		return
	}
	now := c.now()
	for _, d := range dests {
		st, err := c.q.Stats(ctx, d)
		if err != nil {
			continue
		}
		age := 0.0
		if !st.Oldest.IsZero() && now.After(st.Oldest) {
			age = now.Sub(st.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Depth), d)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age, d)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(st.DeadLetters), d)
	}
}
