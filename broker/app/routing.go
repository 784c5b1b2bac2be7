package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/access"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/delivery"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/queue/redisq"
	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
)

// DefaultRedisPrefix is where queue keys live in Redis unless RedisPrefix says otherwise (the
// same default as `hjbroker replay`).
const DefaultRedisPrefix = "hjb:q:"

// RoutingOptions tune delivery. Zero values take the delivery package's defaults (retries
// from 1 s doubling to 5 min, 1 min leases, 8 deliveries in flight per endpoint).
type RoutingOptions struct {
	RetryBase time.Duration // HJB_RETRY_BASE
	RetryMax  time.Duration // HJB_RETRY_MAX
	// Lease is how long a claimed delivery is held before another node may take it over
	// (HJB_DELIVERY_LEASE); a node killed mid-delivery is covered by it.
	Lease       time.Duration
	Concurrency int // HJB_DELIVERY_CONCURRENCY, per endpoint
	// Poll is how often idle endpoints look for work queued by other nodes (default 25 ms).
	Poll time.Duration
}

func (o *RoutingOptions) fromEnv() error {
	for _, f := range []struct {
		dst *time.Duration
		key string
	}{{&o.RetryBase, "HJB_RETRY_BASE"}, {&o.RetryMax, "HJB_RETRY_MAX"}, {&o.Lease, "HJB_DELIVERY_LEASE"}} {
		v := os.Getenv(f.key)
		if v == "" || *f.dst != 0 {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a positive duration such as 2s", f.key, v)
		}
		*f.dst = d
	}
	if v := os.Getenv("HJB_DELIVERY_CONCURRENCY"); v != "" && o.Concurrency == 0 {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n <= 0 {
			return fmt.Errorf("HJB_DELIVERY_CONCURRENCY=%q: want a positive integer", v)
		}
		o.Concurrency = n
	}
	return nil
}

// routingParts are a node's routing and delivery pieces: what OnWrite needs inside the write
// transaction (router, outbox, Subscriptions) and the background relay and workers.
type routingParts struct {
	router *routing.Router
	outbox *routing.Outbox
	subs   *delivery.Subscriptions
	log    *delivery.Log
	queue  queue.Queue
	relay  *routing.Relay
	worker *delivery.Worker
	admin  *delivery.Admin
	cfg    *config.Config
	logger *zap.Logger

	// transforms serve both the router's route checks and the delivery workers.
	transforms *routing.Transforms

	mu     sync.Mutex
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// baseURL is the node's FHIR base for links in notifications and messages.
func (c Config) baseURL() string {
	if c.PublicBase != "" {
		return strings.TrimRight(c.PublicBase, "/")
	}
	return "http://" + c.Addr + "/fhir"
}

// newRouting builds the routing pieces over the node's store. Queue: Redis Streams when
// cfg.RedisURL is set, the embedded queue on the store otherwise.
func newRouting(ctx context.Context, n *Node, cfg Config, fp *fhirpath.Engine, params search.Params) (*routingParts, error) {
	log := cfg.Logger.Named("routing")
	transforms := routing.NewTransforms()
	if err := n.docs.register(transforms); err != nil {
		return nil, err
	}
	router, err := routing.New(n.Config, fp, routing.WithTransforms(transforms), routing.WithErrorHandler(func(route string, err error) {
		log.Warn("route criteria failed to evaluate; the route does not match", zap.String("route", route), zap.Error(err))
	}))
	if err != nil {
		return nil, err
	}
	r := &routingParts{router: router, transforms: transforms, outbox: routing.NewOutbox(nil), log: delivery.NewLog(n.Store, nil), cfg: n.Config, logger: log}
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("HJB_REDIS_URL: %w", err)
		}
		client := redis.NewClient(opts)
		n.closers = append(n.closers, client.Close)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = client.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connecting to Redis at %s: %w", opts.Addr, err)
		}
		prefix := cfg.RedisPrefix
		if prefix == "" {
			prefix = DefaultRedisPrefix
		}
		r.queue = redisq.New(client, prefix)
	} else {
		r.queue = storeq.New(n.Store)
	}
	n.closers = append(n.closers, r.queue.Close)

	r.subs = delivery.NewSubscriptions(delivery.SubscriptionOptions{
		List:  func(ctx context.Context) ([]map[string]any, error) { return listSubscriptions(ctx, n.Store, params) },
		Match: txMatcher{params: params},
		SetStatus: func(ctx context.Context, id, status, errText string) error {
			return setSubscriptionStatus(ctx, n, id, status, errText)
		},
		Config: n.Config,
		Logger: log,
	})
	return r, nil
}

// startWorkers builds the relay, the delivery worker and the admin API; metrics go to reg.
func (r *routingParts) startWorkers(n *Node, cfg Config, params search.Params, reg prometheus.Registerer) error {
	client := &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
	}}
	hopts := delivery.HTTPOptions{Client: client}
	senderODS := ""
	for _, a := range n.Config.Agencies {
		if a.Kind == config.KindBroker {
			senderODS = a.ODS
			break
		}
	}
	base := cfg.baseURL()
	ro := cfg.Routing
	poll := ro.Poll
	if poll == 0 {
		poll = 25 * time.Millisecond
	}
	w, err := delivery.New(delivery.Options{
		OnState: n.onDeliveryState,
		Queue:   r.queue,
		Store:   delivery.FromStore(n.Store, params),
		Policy:  policy.New(n.Config, nil),
		Config:  n.Config,
		Adapters: map[string]delivery.Adapter{
			delivery.TypeFHIRRest:    delivery.NewFHIRRest(hopts),
			delivery.TypeFHIRMessage: delivery.NewFHIRMessage(delivery.MessageOptions{HTTPOptions: hopts, Source: base, SenderODS: senderODS, Software: "hjbroker", Version: Version}),
			delivery.TypeRestHook:    delivery.NewRestHook(delivery.HookOptions{HTTPOptions: hopts, BaseURL: base}),
		},
		Transforms:    transformsFunc{t: r.transforms, base: base},
		Subscriptions: r.subs,
		Log:           r.log,
		Logger:        cfg.Logger,
		Registerer:    reg,
		Concurrency:   ro.Concurrency,
		Lease:         ro.Lease,
		Backoff:       delivery.Backoff{Base: ro.RetryBase, Max: ro.RetryMax},
		Poll:          poll,
	})
	if err != nil {
		return err
	}
	r.worker = w
	r.relay = routing.NewRelay(n.Store, r.queue, routing.RelayOptions{Log: r.logger, OnRelayed: func(int) { w.Notify() }})
	r.admin = delivery.NewAdmin(delivery.AdminOptions{Queue: r.queue, Log: r.log, Config: n.Config, Worker: w, Logger: cfg.Logger})
	return reg.Register(relayCollector{r: r.relay})
}

// Start runs the outbox relay and the delivery workers in the background until Stop (or
// Close). Serve starts them itself; tests that use the handler directly call Start.
func (n *Node) Start(ctx context.Context) {
	r := n.routing
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done.Add(2)
	go func() {
		defer r.done.Done()
		r.relay.Run(ctx) //nolint:errcheck // Run returns nil when ctx ends
	}()
	go func() {
		defer r.done.Done()
		r.worker.Run(ctx) //nolint:errcheck // Run returns nil when ctx ends
	}()
}

// Stop ends the background relay and workers and waits for in-flight deliveries; an
// unfinished one is delivered again after its lease, by this node or another.
func (n *Node) Stop() {
	r := n.routing
	if r == nil {
		return
	}
	r.mu.Lock()
	cancel := r.cancel
	r.cancel = nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		r.done.Wait()
	}
}

// DeliveryAdmin is the delivery admin API (states, endpoints, replay), as served under /admin.
func (n *Node) DeliveryAdmin() *delivery.Admin {
	if n.routing == nil {
		return nil
	}
	return n.routing.admin
}

// txKey carries the write transaction to the Subscription matcher, so criteria are evaluated
// against the version being written, which only the transaction can see.
type txKey struct{}

// onWrite turns a stored change into deliveries and writes them to the outbox and the
// delivery log in the same transaction.
func (r *routingParts) onWrite(ctx context.Context, tx store.Tx, ev engine.WriteEvent) error {
	base := baseEvent(ev)
	events := []routing.Event{base}
	var extra []routing.Delivery
	m, inMessage := ctx.Value(messageKey{}).(*inboundMessage)
	if inMessage && base.ResourceType == "MessageHeader" && base.ID == m.headerID {
		base.Kind, base.MessageEvent, base.Patient = routing.Message, m.event, m.patient
		events = []routing.Event{base}
		extra = m.replyDeliveries(r.cfg, base)
	} else if inMessage && m.patient == "" {
		m.patient = base.Patient
	}
	if t := taskStatusEvent(base, ev); t != nil {
		// The more specific event first: an endpoint gets one delivery per version.
		events = []routing.Event{*t, base}
	}
	var ds []routing.Delivery
	seen := map[string]bool{}
	add := func(d routing.Delivery) {
		if !seen[d.Destination] {
			seen[d.Destination] = true
			ds = append(ds, d)
		}
	}
	for _, e := range events {
		for _, d := range r.router.Match(e) {
			add(d)
		}
	}
	for _, d := range extra {
		add(d)
	}
	subs, err := r.subs.Deliveries(context.WithValue(ctx, txKey{}, tx), base)
	if err != nil {
		return fmt.Errorf("matching Subscriptions: %w", err)
	}
	for _, d := range subs {
		add(d)
	}
	if len(ds) == 0 {
		return nil
	}
	if err := r.outbox.AddTx(ctx, tx, ds); err != nil {
		return err
	}
	return delivery.RecordPending(ctx, tx, time.Now(), ds...)
}

// baseEvent describes a stored version as a create, update or delete.
func baseEvent(ev engine.WriteEvent) routing.Event {
	st := ev.Stored
	e := routing.Event{ResourceType: st.Type, ID: st.ID, Version: st.Version, Resource: ev.Resource, At: st.LastUpdated}
	if ev.Access != nil {
		e.SourceAgency = ev.Access.AgencyID
	}
	switch {
	case st.Deleted:
		e.Kind = routing.Delete
	case ev.Previous == nil || ev.Previous.Deleted:
		e.Kind = routing.Create
	default:
		e.Kind = routing.Update
	}
	if ev.Resource != nil {
		e.Patient = access.PatientOf(ev.Resource)
	} else if prev := decodePrevious(ev); prev != nil {
		e.Patient = access.PatientOf(prev)
	}
	return e
}

func decodePrevious(ev engine.WriteEvent) map[string]any {
	if ev.Previous == nil || ev.Previous.Deleted || len(ev.Previous.Body) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(ev.Previous.Body, &m) != nil {
		return nil
	}
	return m
}

// taskStatusEvent returns a task-status event when an update changed a Task's status.
func taskStatusEvent(base routing.Event, ev engine.WriteEvent) *routing.Event {
	if base.ResourceType != "Task" || base.Kind != routing.Update {
		return nil
	}
	prev := decodePrevious(ev)
	was, _ := prev["status"].(string)
	now, _ := ev.Resource["status"].(string)
	if prev == nil || was == now {
		return nil
	}
	t := base
	t.Kind, t.TaskStatus, t.PreviousStatus = routing.TaskStatus, now, was
	return &t
}

// txMatcher evaluates Subscription criteria by searching, inside the write transaction, for
// the resource being written under the criteria's parameters plus its _id.
type txMatcher struct{ params search.Params }

func (m txMatcher) Match(ctx context.Context, typ string, params url.Values, res map[string]any) (bool, error) {
	tx, ok := ctx.Value(txKey{}).(store.Tx)
	id, _ := res["id"].(string)
	if !ok || id == "" {
		return false, nil
	}
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("_id", id)
	sq, err := search.Parse(typ, q, m.params, search.Options{Strict: true})
	if err != nil {
		// A criteria the server cannot evaluate matches nothing; it must not fail writes.
		return false, nil
	}
	page, err := tx.Search(ctx, sq, store.SearchOptions{Limit: 1, KeysOnly: true})
	if err != nil {
		return false, err
	}
	return len(page.RIDs) > 0, nil
}

// maxSubscriptions bounds the Subscriptions read for matching.
const maxSubscriptions = 10000

// listSubscriptions reads the stored Subscriptions, inside the write transaction when there
// is one: a write holding the store's writer must not wait for another connection.
func listSubscriptions(ctx context.Context, s store.Store, params search.Params) ([]map[string]any, error) {
	q, err := search.Parse("Subscription", url.Values{}, params, search.Options{MaxCount: maxSubscriptions})
	if err != nil {
		return nil, err
	}
	var r store.Reader = s
	if tx, ok := ctx.Value(txKey{}).(store.Tx); ok {
		r = tx
	}
	return store.SearchJSON(ctx, r, q, maxSubscriptions)
}

// setSubscriptionStatus records a Subscription's status as the broker's own update.
func setSubscriptionStatus(ctx context.Context, n *Node, id, status, errText string) error {
	cur, err := n.Store.Current(ctx, "Subscription", id)
	if err != nil {
		return err
	}
	if cur.Deleted {
		return nil
	}
	var sub map[string]any
	if err := json.Unmarshal(cur.Body, &sub); err != nil {
		return err
	}
	sub["status"] = status
	delete(sub, "error")
	if errText != "" {
		sub["error"] = errText
	}
	body, _ := json.Marshal(sub)
	resp := n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPut, Path: "Subscription/" + id, Body: body,
		Header: http.Header{"If-Match": {fmt.Sprintf(`W/"%d"`, cur.Version)}}})
	if resp.Status >= 300 {
		return fmt.Errorf("updating Subscription/%s: HTTP %d", id, resp.Status)
	}
	return nil
}

// transformsFunc serves the delivery workers' transforms from the routing registry.
type transformsFunc struct {
	t    *routing.Transforms
	base string
}

func (f transformsFunc) Transform(_ context.Context, in routing.TransformInput) (map[string]any, error) {
	in.BaseURL = f.base
	return f.t.Apply(in)
}

// relayCollector exposes the relay's counts and the outbox backlog.
type relayCollector struct{ r *routing.Relay }

var (
	descRelayed  = prometheus.NewDesc("hjbroker_outbox_relayed_total", "Outbox rows handed to the delivery queue.", nil, nil)
	descFailures = prometheus.NewDesc("hjbroker_outbox_relay_failures_total", "Relay passes that failed (their rows stay in the outbox).", nil, nil)
	descBacklog  = prometheus.NewDesc("hjbroker_outbox_backlog", "Outbox rows not yet handed to the queue.", nil, nil)
	descAge      = prometheus.NewDesc("hjbroker_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet handed to the queue (0 when none).", nil, nil)
)

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRelayed
	ch <- descFailures
	ch <- descBacklog
	ch <- descAge
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descRelayed, prometheus.CounterValue, float64(st.Relayed))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, oldest, err := c.r.Backlog(ctx)
	if err != nil {
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, time.Since(oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age)
}

// afterCommit wakes the relay once a write transaction, and any outbox rows in it, committed.
func (r *routingParts) afterCommit() {
	if r.relay != nil {
		r.relay.Notify()
	}
}

// auditDelivery records deliveries, dead letters and deliveries withheld at delivery time in
// the audit trail: each is a disclosure decision about a patient's data.
func (n *Node) auditDelivery(e delivery.Entry) {
	if n.recorder == nil {
		return
	}
	ev := audit.Event{Action: audit.ActionDelivery, Outcome: audit.OutcomeSuccess, Detail: "to endpoint " + e.Destination}
	switch e.State {
	case routing.Delivered:
	case routing.Withheld:
		ev.Action, ev.Outcome, ev.Detail = audit.ActionDenial, audit.OutcomeDenied, "delivery to "+e.Destination+" withheld: "+e.Reason
	case routing.Dead:
		ev.Outcome, ev.Detail = audit.OutcomeError, "delivery to "+e.Destination+" failed: "+e.LastError
	default:
		return // pending and retrying are not disclosures
	}
	if _, ag, ok := n.Config.Endpoint(e.Destination); ok {
		ev.AgencyID, ev.AgencyODS = ag.ID, ag.ODS
	}
	if e.Patient != "" {
		ev.Patients = []string{e.Patient}
	}
	if ref := strings.SplitN(e.Resource, "/", 4); len(ref) >= 2 {
		r := audit.Ref{Type: ref[0], ID: ref[1]}
		if len(ref) == 4 {
			r.Version = ref[3]
		}
		ev.Resources = []audit.Ref{r}
	}
	ev.RequestID = e.ID
	if err := n.recorder.Record(ev); err != nil && n.cfg.Logger != nil {
		n.cfg.Logger.Error("audit of a delivery failed", zap.Error(err), zap.String("delivery", e.ID))
	}
}
