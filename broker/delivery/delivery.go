// Package delivery sends routed deliveries to their destinations: workers claim queue
// messages per destination, re-check consent and sharing rules at delivery time, transform,
// and send through the adapter of the endpoint's type (FHIR REST transaction, FHIR message,
// R4 Subscription rest-hook). Transient failures are retried with exponential backoff and
// full jitter up to the endpoint's attempt and age limits, then dead-lettered; permanent ones
// are dead-lettered at once. Every state change goes to the delivery log, which the admin API
// shows and replays from.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Store is what the worker reads: the version to deliver, and the patient's Consents for the
// re-check.
type Store interface {
	VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error)
	// Consents returns the patient's ("Patient/123") Consent resources, any status.
	Consents(ctx context.Context, patient string) ([]map[string]any, error)
}

// Policy decides disclosure (*policy.Engine).
type Policy interface {
	Decide(req policy.Request, resource map[string]any, consents []map[string]any) policy.Decision
}

// Transforms applies the delivery's named mapping (in.Delivery.Transform) to a resource
// before it is sent. The input carries the delivery, endpoint and agencies, which a mapping
// such as fhir-message needs to build the same output on every attempt.
type Transforms interface {
	Transform(ctx context.Context, in routing.TransformInput) (map[string]any, error)
}

// Backoff sets the delay before retry n (n >= 1): min(Max, Base * 2^(n-1)), of which the
// Jitter fraction is random (1 = full jitter, the default when zero; negative for none).
type Backoff struct {
	Base, Max time.Duration
	Jitter    float64
}

// Delay returns the delay before retry n; r is uniform in [0, 1).
func (b Backoff) Delay(n int, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(b.Base) * math.Pow(2, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) {
		d = float64(b.Max)
	}
	j := b.Jitter
	switch {
	case j == 0:
		j = 1
	case j < 0:
		j = 0
	case j > 1:
		j = 1
	}
	return time.Duration(d*(1-j) + d*j*r)
}

// Options configure a Worker. Queue, Store, Policy and Config are required.
type Options struct {
	// OnState, when set, is told of every state a delivery reaches (for the audit trail).
	OnState func(Entry)
	Queue   queue.Queue
	Store   Store
	Policy  Policy
	Config  *config.Config
	// Adapters by endpoint type (fhir-rest, fhir-message, rest-hook, ...).
	Adapters map[string]Adapter
	// Transforms applies Delivery.Transform; nil means none are configured (a delivery that
	// names one is dead-lettered).
	Transforms Transforms
	// Subscriptions resolves "Subscription/{id}" destinations and keeps their status.
	Subscriptions *Subscriptions
	// Log records delivery states (none when nil).
	Log *Log

	Clock      func() time.Time
	Rand       func() float64
	Logger     *zap.Logger
	Registerer prometheus.Registerer

	// Concurrency is how many deliveries of one destination are in flight at once (8).
	Concurrency int
	// Lease is how long a claimed delivery is held before another node may take it (1 m).
	Lease time.Duration
	// Timeout bounds one attempt (Lease/2, at most 30 s).
	Timeout time.Duration
	// Backoff between attempts (1 s doubling to 5 m, full jitter).
	Backoff Backoff
	// MaxAttempts and MaxAge apply to endpoints that set none (10 attempts, 24 h).
	MaxAttempts int
	MaxAge      time.Duration
	// Poll is how often an idle destination is polled (50 ms); Notify wakes them at once.
	Poll time.Duration
	// Node names this consumer (host name and process id by default).
	Node string
}

// Target is where a destination's deliveries go.
type Target struct {
	Endpoint config.Endpoint
	// AgencyID is the receiving agency, whose sharing rules and consent apply.
	AgencyID string
	// Header, PayloadMode and MimeType come from a Subscription channel.
	Header      http.Header
	PayloadMode string
	MimeType    string
	// Subscription is the Subscription id for Subscription destinations.
	Subscription string
}

// Worker delivers queued messages. Safe for concurrent use.
type Worker struct {
	o       Options
	log     *zap.Logger
	m       *metrics
	limits  map[string]limits
	mu      sync.Mutex
	health  map[string]*Health
	wake    chan struct{}
	running map[string]bool
}

type limits struct {
	attempts int
	age      time.Duration
}

// Health is an endpoint's recent delivery health.
type Health struct {
	Failing bool `json:"failing"`
	// Since is when the current failure run (or the last recovery) started.
	Since time.Time `json:"since,omitzero"`
	// Failures counts consecutive failed attempts.
	Failures  int    `json:"failures"`
	LastError string `json:"lastError,omitempty"`
}

// New checks o and returns a Worker; its metrics are registered with o.Registerer.
func New(o Options) (*Worker, error) {
	if o.Queue == nil || o.Store == nil || o.Policy == nil || o.Config == nil {
		return nil, errors.New("delivery: Queue, Store, Policy and Config are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = min(o.Lease/2, 30*time.Second)
	}
	if o.Backoff.Base <= 0 {
		o.Backoff.Base = time.Second
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 5 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.Poll <= 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.Node == "" {
		host, _ := os.Hostname()
		o.Node = fmt.Sprintf("%s-%d", orDefault(host, "node"), os.Getpid())
	}
	w := &Worker{o: o, log: o.Logger.Named("delivery"), m: newMetrics(), limits: map[string]limits{},
		health: map[string]*Health{}, wake: make(chan struct{}), running: map[string]bool{}}
	for _, a := range o.Config.Agencies {
		for _, ep := range a.Endpoints {
			l := limits{attempts: ep.MaxAttempts, age: o.MaxAge}
			if l.attempts <= 0 {
				l.attempts = o.MaxAttempts
			}
			if ep.MaxAge != "" {
				d, err := time.ParseDuration(ep.MaxAge)
				if err != nil || d <= 0 {
					return nil, fmt.Errorf("delivery: endpoint %s: maxAge %q is not a duration", ep.ID, ep.MaxAge)
				}
				l.age = d
			}
			w.limits[ep.ID] = l
		}
	}
	if o.Registerer != nil {
		for _, c := range append(w.m.collectors(), newQueueCollector(o.Queue, o.Clock)) {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("delivery: registering metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Notify wakes idle destination loops (after the relay enqueued work).
func (w *Worker) Notify() {
	w.mu.Lock()
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

func (w *Worker) wakeChan() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wake
}

// Run delivers until ctx ends: one loop per destination (those of the configuration and any
// the queue reports, checked again every few seconds), each with Concurrency deliveries in
// flight. It returns after every in-flight attempt has finished.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	start := func(dest string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running[dest] {
			return
		}
		w.running[dest] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, dest)
		}()
	}
	for id := range w.limits {
		start(id)
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		dests, err := w.o.Queue.Destinations(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("listing queue destinations", zap.Error(err))
		}
		for _, d := range dests {
			start(d)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			w.mu.Lock()
			w.running = map[string]bool{}
			w.mu.Unlock()
			return nil
		case <-tick.C:
		}
	}
}

// loop keeps up to Concurrency deliveries of dest in flight, claiming as slots free up.
func (w *Worker) loop(ctx context.Context, dest string) {
	slots := make(chan struct{}, w.o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{}, w.o.Concurrency)
	for ctx.Err() == nil {
		free := w.o.Concurrency - len(slots)
		var msgs []queue.Message
		if free > 0 {
			var err error
			msgs, err = w.o.Queue.Claim(ctx, dest, w.o.Node, free, w.o.Lease)
			if err != nil && ctx.Err() == nil {
				w.log.Warn("claiming deliveries", zap.String("endpoint", dest), zap.Error(err))
			}
		}
		for _, m := range msgs {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() {
					<-slots
					wg.Done()
					select {
					case done <- struct{}{}:
					default:
					}
				}()
				w.process(ctx, m)
			}()
		}
		if len(msgs) > 0 && len(msgs) == free {
			continue // more may be waiting
		}
		t := time.NewTimer(w.o.Poll)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-done:
		case <-w.wakeChan():
		}
		t.Stop()
	}
}

// ProcessOnce claims up to Concurrency deliveries of destination, processes them and returns
// how many it claimed (for tests and single-step tools).
func (w *Worker) ProcessOnce(ctx context.Context, destination string) (int, error) {
	msgs, err := w.o.Queue.Claim(ctx, destination, w.o.Node, w.o.Concurrency, w.o.Lease)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.process(ctx, m)
		}()
	}
	wg.Wait()
	return len(msgs), nil
}

// envelope reads a queue message body: a routing.Delivery, and the correlation id of the
// change that caused it when the routing layer records one.
type envelope struct {
	routing.Delivery
	CorrelationID string `json:"correlationId,omitempty"`
}

// attempt is one claimed message on its way.
type attempt struct {
	m     queue.Message
	d     routing.Delivery
	entry Entry
}

func (w *Worker) process(ctx context.Context, m queue.Message) {
	var env envelope
	if err := json.Unmarshal(m.Body, &env); err != nil {
		a := &attempt{m: m, entry: Entry{ID: m.IdempotencyKey, QueueID: m.ID, Destination: m.Destination}}
		w.dead(ctx, a, fmt.Errorf("the queued delivery cannot be read: %w", err), false)
		return
	}
	d := env.Delivery
	if d.ID == "" {
		d.ID = m.IdempotencyKey
	}
	a := &attempt{m: m, d: d, entry: entryOf(d, m.ID)}
	a.entry.Destination = m.Destination
	tgt, err := w.target(ctx, m.Destination)
	if err != nil {
		w.fail(ctx, a, err, false)
		return
	}
	p, withheld, err := w.prepare(ctx, a, tgt)
	switch {
	case err != nil:
		w.fail(ctx, a, err, false)
		return
	case withheld != "":
		w.withhold(ctx, a, withheld)
		return
	}
	p.CorrelationID = orDefault(env.CorrelationID, d.ID)
	ad := w.o.Adapters[tgt.Endpoint.Type]
	if ad == nil {
		w.dead(ctx, a, Permanentf("no adapter for endpoint type %q", tgt.Endpoint.Type), false)
		return
	}
	actx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	start := w.o.Clock()
	_, err = ad.Send(actx, tgt.Endpoint, p)
	cancel()
	w.m.attempt.WithLabelValues(m.Destination).Observe(w.o.Clock().Sub(start).Seconds())
	if ctx.Err() != nil {
		// Shutting down: the lease runs out and the delivery is claimed again (at least once).
		return
	}
	if tgt.Subscription != "" && w.o.Subscriptions != nil {
		w.o.Subscriptions.Outcome(ctx, tgt.Subscription, err)
	}
	if err != nil {
		w.fail(ctx, a, err, true)
		return
	}
	w.delivered(ctx, a)
}

// target resolves a destination to its endpoint and agency.
func (w *Worker) target(ctx context.Context, dest string) (Target, error) {
	if strings.HasPrefix(dest, SubscriptionPrefix) {
		if w.o.Subscriptions == nil {
			return Target{}, Permanentf("no Subscriptions are served, but %s was queued", dest)
		}
		return w.o.Subscriptions.Target(ctx, dest)
	}
	for _, ag := range w.o.Config.Agencies {
		for _, ep := range ag.Endpoints {
			if ep.ID == dest {
				return Target{Endpoint: ep, AgencyID: ag.ID}, nil
			}
		}
	}
	return Target{}, Permanentf("no endpoint %q is configured", dest)
}

// prepare loads the version, re-checks disclosure and transforms it. A non-empty withheld is
// the reason the policy denies the delivery.
func (w *Worker) prepare(ctx context.Context, a *attempt, tgt Target) (Payload, string, error) {
	d := a.d
	p := Payload{Delivery: d, RequestID: d.ID, Header: tgt.Header, PayloadMode: tgt.PayloadMode, MimeType: tgt.MimeType}
	ag, ok := w.o.Config.Agency(tgt.AgencyID)
	if !ok {
		return p, fmt.Sprintf("the receiving agency %q is not configured", tgt.AgencyID), nil
	}
	p.Agency = ag
	res, err := w.o.Store.VRead(ctx, d.ResourceType, d.ResourceID, d.Version)
	if errors.Is(err, store.ErrNotFound) {
		return p, "", Permanentf("%s/%s/_history/%d is not stored", d.ResourceType, d.ResourceID, d.Version)
	}
	if err != nil {
		return p, "", fmt.Errorf("loading the version to deliver: %w", err)
	}
	// A deletion has no body: disclose it if the version it deletes could be disclosed.
	check := res
	if res.Deleted {
		p.Deleted = true
		check = nil
		if d.Version > 1 {
			prev, err := w.o.Store.VRead(ctx, d.ResourceType, d.ResourceID, d.Version-1)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return p, "", fmt.Errorf("loading the deleted version: %w", err)
			}
			if err == nil && !prev.Deleted {
				check = prev
			}
		}
	}
	var resource map[string]any
	if check != nil {
		if err := json.Unmarshal(check.Body, &resource); err != nil {
			return p, "", Permanentf("%s/%s/_history/%d is not JSON: %v", d.ResourceType, d.ResourceID, check.Version, err)
		}
		var consents []map[string]any
		if d.Patient != "" {
			if consents, err = w.o.Store.Consents(ctx, d.Patient); err != nil {
				return p, "", fmt.Errorf("loading the patient's Consents: %w", err)
			}
		}
		subject, injected := withSource(resource, d.SourceAgency)
		dec := w.o.Policy.Decide(policy.Request{Agency: policy.Agency{ID: ag.ID, Kind: ag.Kind, ODS: ag.ODS}, Purpose: d.Purpose}, subject, consents)
		if dec.Permit && injected {
			if dec.Redacted {
				delete(obj(dec.Resource["meta"]), "source")
			} else {
				dec.Resource = resource
			}
		}
		if !dec.Permit {
			reason := "the sharing policy denies it"
			if n := len(dec.Reasons); n > 0 {
				reason = dec.Reasons[n-1].Text
			}
			return p, reason, nil
		}
		resource = dec.Resource
	}
	if p.Deleted {
		return p, "", nil
	}
	if d.Transform != "" {
		if w.o.Transforms == nil {
			return p, "", Permanentf("transform %q is not available", d.Transform)
		}
		in := routing.TransformInput{Delivery: d, Resource: resource, Endpoint: tgt.Endpoint, Agency: *ag}
		if src, ok := w.o.Config.Agency(d.SourceAgency); ok && d.SourceAgency != "" {
			in.Source = src
		}
		if resource, err = w.o.Transforms.Transform(ctx, in); err != nil {
			var wh *routing.WithheldError
			if errors.As(err, &wh) {
				return p, wh.Reason, nil
			}
			return p, "", Permanentf("transform %s: %v", d.Transform, err)
		}
	}
	p.Resource = resource
	return p, "", nil
}

func (w *Worker) limitsFor(dest string) limits {
	if l, ok := w.limits[dest]; ok {
		return l
	}
	return limits{attempts: w.o.MaxAttempts, age: w.o.MaxAge}
}

// fail retries a transient failure or dead-letters it; fromEndpoint says the endpoint
// itself failed (for its health), rather than the broker's own preparation.
func (w *Worker) fail(ctx context.Context, a *attempt, err error, fromEndpoint bool) {
	dest := a.m.Destination
	permanent := IsPermanent(err)
	kind := "transient"
	if permanent {
		kind = "permanent"
	}
	if fromEndpoint {
		w.m.failures.WithLabelValues(dest, kind).Inc()
		if !permanent {
			w.endpointFailed(dest, err)
		}
	}
	attempts := a.m.Attempt + 1
	l := w.limitsFor(dest)
	now := w.o.Clock()
	switch {
	case permanent:
		w.dead(ctx, a, err, fromEndpoint)
		return
	case attempts >= l.attempts:
		w.dead(ctx, a, fmt.Errorf("gave up after %d attempts: %w", attempts, err), fromEndpoint)
		return
	}
	delay := max(w.o.Backoff.Delay(attempts, w.o.Rand()), retryAfter(err))
	if !a.m.EnqueuedAt.IsZero() && now.Add(delay).Sub(a.m.EnqueuedAt) > l.age {
		w.dead(ctx, a, fmt.Errorf("gave up after %d attempts, older than %s: %w", attempts, l.age, err), fromEndpoint)
		return
	}
	if qerr := w.o.Queue.Retry(ctx, dest, a.m.ID, now.Add(delay), err.Error()); qerr != nil {
		w.log.Error("rescheduling a delivery", zap.String("endpoint", dest), zap.String("delivery", a.entry.ID), zap.Error(qerr))
		return
	}
	w.m.deliveries.WithLabelValues(dest, outcomeRetried).Inc()
	w.record(ctx, a, routing.Retrying, attempts, err.Error(), "")
}

func (w *Worker) dead(ctx context.Context, a *attempt, err error, attempted bool) {
	dest := a.m.Destination
	if qerr := w.o.Queue.DeadLetter(ctx, dest, a.m.ID, err.Error()); qerr != nil {
		w.log.Error("dead-lettering a delivery", zap.String("endpoint", dest), zap.String("delivery", a.entry.ID), zap.Error(qerr))
		return
	}
	attempts := a.m.Attempt
	if attempted {
		attempts++
	}
	w.m.deliveries.WithLabelValues(dest, outcomeDead).Inc()
	w.m.attempts.WithLabelValues(dest).Observe(float64(attempts))
	w.log.Warn("delivery dead-lettered", zap.String("endpoint", dest), zap.String("delivery", a.entry.ID),
		zap.String("resource", a.entry.Resource), zap.Int("attempts", attempts), zap.String("error", err.Error()))
	w.record(ctx, a, routing.Dead, attempts, err.Error(), "")
}

func (w *Worker) withhold(ctx context.Context, a *attempt, reason string) {
	dest := a.m.Destination
	if err := w.o.Queue.Ack(ctx, dest, a.m.ID); err != nil {
		w.log.Error("acknowledging a withheld delivery", zap.String("endpoint", dest), zap.Error(err))
		return
	}
	w.m.deliveries.WithLabelValues(dest, outcomeWithheld).Inc()
	w.log.Info("delivery withheld", zap.String("endpoint", dest), zap.String("delivery", a.entry.ID),
		zap.String("resource", a.entry.Resource), zap.String("reason", reason))
	w.record(ctx, a, routing.Withheld, a.m.Attempt, "", reason)
}

func (w *Worker) delivered(ctx context.Context, a *attempt) {
	dest := a.m.Destination
	w.endpointOK(dest)
	if err := w.o.Queue.Ack(ctx, dest, a.m.ID); err != nil {
		// The lease runs out and it is sent again: the receiver drops it by X-Request-ID.
		w.log.Error("acknowledging a delivery", zap.String("endpoint", dest), zap.Error(err))
		return
	}
	attempts := a.m.Attempt + 1
	w.m.deliveries.WithLabelValues(dest, outcomeDelivered).Inc()
	w.m.attempts.WithLabelValues(dest).Observe(float64(attempts))
	if !a.d.CreatedAt.IsZero() {
		w.m.latency.WithLabelValues(dest).Observe(w.o.Clock().Sub(a.d.CreatedAt).Seconds())
	}
	w.record(ctx, a, routing.Delivered, attempts, "", "")
}

func (w *Worker) record(ctx context.Context, a *attempt, state routing.State, attempts int, lastErr, reason string) {
	if w.o.Log == nil || a.entry.ID == "" {
		return
	}
	e := a.entry
	e.State, e.Attempts, e.LastError, e.Reason, e.UpdatedAt = state, attempts, lastErr, reason, w.o.Clock()
	if w.o.OnState != nil {
		w.o.OnState(e)
	}
	if err := w.o.Log.Record(ctx, e); err != nil {
		w.log.Error("recording delivery state", zap.String("delivery", e.ID), zap.Error(err))
	}
}

// endpointFailed notes a transient failure; the first of a run is logged.
func (w *Worker) endpointFailed(dest string, err error) {
	w.mu.Lock()
	h := w.healthOf(dest)
	first := !h.Failing
	if first {
		h.Failing, h.Since, h.Failures = true, w.o.Clock(), 0
	}
	h.Failures++
	h.LastError = err.Error()
	w.mu.Unlock()
	if first {
		w.m.failing.WithLabelValues(dest).Set(1)
		w.log.Warn("endpoint failing", zap.String("endpoint", dest), zap.String("error", err.Error()))
	}
}

// endpointOK notes a success; the first after a failure run is logged.
func (w *Worker) endpointOK(dest string) {
	w.mu.Lock()
	h := w.healthOf(dest)
	recovered := h.Failing
	var down time.Duration
	failures := h.Failures
	if recovered {
		now := w.o.Clock()
		down = now.Sub(h.Since)
		h.Failing, h.Since, h.Failures, h.LastError = false, now, 0, ""
	}
	w.mu.Unlock()
	if recovered {
		w.m.failing.WithLabelValues(dest).Set(0)
		w.log.Info("endpoint recovered", zap.String("endpoint", dest), zap.Duration("failingFor", down), zap.Int("failedAttempts", failures))
	}
}

func (w *Worker) healthOf(dest string) *Health {
	h, ok := w.health[dest]
	if !ok {
		h = &Health{}
		w.health[dest] = h
	}
	return h
}

// Health returns an endpoint's health as this node has seen it.
func (w *Worker) Health(dest string) Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h, ok := w.health[dest]; ok {
		return *h
	}
	return Health{}
}

// withSource returns the resource with meta.source naming the agency that made the change,
// when the resource names none: the policy tells who recorded data from meta.source, and
// the consent defaults depend on it. The input is not modified.
func withSource(res map[string]any, agency string) (map[string]any, bool) {
	meta := obj(res["meta"])
	if agency == "" || str(meta, "source") != "" {
		return res, false
	}
	out := make(map[string]any, len(res))
	for k, v := range res {
		out[k] = v
	}
	m := make(map[string]any, len(meta)+1)
	for k, v := range meta {
		m[k] = v
	}
	m["source"] = agency
	out["meta"] = m
	return out, true
}
