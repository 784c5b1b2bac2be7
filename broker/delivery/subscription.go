package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
)

// SubscriptionPrefix starts the queue destination of a Subscription's deliveries
// ("Subscription/{id}"); configured endpoint ids cannot contain a slash.
const SubscriptionPrefix = "Subscription/"

// Matcher evaluates the search parameters of a Subscription criteria
// ("Observation?code=...&patient=...") against a resource of that type.
type Matcher interface {
	Match(ctx context.Context, resourceType string, params url.Values, resource map[string]any) (bool, error)
}

// MatchFunc adapts a function to Matcher.
type MatchFunc func(ctx context.Context, resourceType string, params url.Values, resource map[string]any) (bool, error)

// Match calls f.
func (f MatchFunc) Match(ctx context.Context, typ string, params url.Values, res map[string]any) (bool, error) {
	return f(ctx, typ, params, res)
}

// SubscriptionOptions configure Subscriptions.
type SubscriptionOptions struct {
	// List returns the stored Subscription resources (any status).
	List func(ctx context.Context) ([]map[string]any, error)
	// Match evaluates criteria parameters; required when any criteria has parameters.
	Match Matcher
	// SetStatus records a Subscription's new status ("active", or "error" with the error
	// text for Subscription.error) in the stored resource.
	SetStatus func(ctx context.Context, id, status, errText string) error
	// Config finds the agency that owns a Subscription from its meta.source (an agency id or
	// ODS code); Agency overrides that.
	Config *config.Config
	Agency func(sub map[string]any) string
	// Purpose is the purpose of use of notifications (TREAT when empty).
	Purpose string
	// FailureThreshold is how many consecutive failed attempts put a Subscription in error
	// (3 when zero).
	FailureThreshold int
	// Refresh bounds how long the list of Subscriptions is cached (5 s when zero); writes of
	// Subscriptions seen by Deliveries refresh it at once.
	Refresh time.Duration
	Clock   func() time.Time
	Logger  *zap.Logger
}

// Subscriptions turns events into rest-hook deliveries for the matching R4 Subscriptions and
// keeps their status: active after a successful notification, error (with the reason) after
// FailureThreshold consecutive failures. Safe for concurrent use.
type Subscriptions struct {
	o SubscriptionOptions

	mu       sync.Mutex
	subs     map[string]map[string]any
	loadedAt time.Time
	status   map[string]string // last status known per Subscription id
	failures map[string]int
}

// NewSubscriptions returns a Subscriptions over o.
func NewSubscriptions(o SubscriptionOptions) *Subscriptions {
	if o.Purpose == "" {
		o.Purpose = "TREAT"
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Subscriptions{o: o, status: map[string]string{}, failures: map[string]int{}}
}

// Invalidate makes the next use read the Subscriptions again.
func (s *Subscriptions) Invalidate() {
	s.mu.Lock()
	s.subs = nil
	s.mu.Unlock()
}

func (s *Subscriptions) load(ctx context.Context, force bool) (map[string]map[string]any, error) {
	s.mu.Lock()
	if s.subs != nil && !force && s.o.Clock().Sub(s.loadedAt) < s.o.Refresh {
		subs := s.subs
		s.mu.Unlock()
		return subs, nil
	}
	s.mu.Unlock()
	list, err := s.o.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Subscriptions: %w", err)
	}
	subs := make(map[string]map[string]any, len(list))
	for _, sub := range list {
		if id := str(sub, "id"); id != "" {
			subs[id] = sub
		}
	}
	s.mu.Lock()
	s.subs, s.loadedAt = subs, s.o.Clock()
	for id, sub := range subs {
		// The stored status wins over what this node last set: another node or a user may
		// have changed it.
		s.status[id] = str(sub, "status")
	}
	s.mu.Unlock()
	return subs, nil
}

// live reports whether a Subscription is one the broker notifies: requested, active, or in
// error (notifications go on, so that it can recover), and not past its end.
func (s *Subscriptions) live(sub map[string]any) bool {
	switch str(sub, "status") {
	case "requested", "active", "error":
	default:
		return false
	}
	if end := str(sub, "end"); end != "" {
		if t, err := time.Parse(time.RFC3339, end); err == nil && !s.o.Clock().Before(t) {
			return false
		}
	}
	return str(obj(sub["channel"]), "type") == "rest-hook"
}

// Deliveries returns a delivery for each live rest-hook Subscription whose criteria the
// event's resource matches. Deletions match criteria without parameters only (there is no
// resource to evaluate them on). Changes to Subscriptions are never notified; they refresh
// the cached list.
func (s *Subscriptions) Deliveries(ctx context.Context, ev routing.Event) ([]routing.Delivery, error) {
	if ev.ResourceType == "Subscription" {
		s.Invalidate()
		return nil, nil
	}
	switch ev.Kind {
	case routing.Create, routing.Update, routing.Delete:
	default:
		return nil, nil
	}
	subs, err := s.load(ctx, false)
	if err != nil {
		return nil, err
	}
	at := ev.At
	if at.IsZero() {
		at = s.o.Clock()
	}
	var out []routing.Delivery
	for id, sub := range subs {
		if !s.live(sub) {
			continue
		}
		ok, err := s.matches(ctx, str(sub, "criteria"), ev)
		if err != nil {
			return nil, fmt.Errorf("Subscription/%s criteria: %w", id, err)
		}
		if !ok {
			continue
		}
		out = append(out, routing.Delivery{
			ID:           uuid.NewString(),
			Route:        "Subscription/" + id,
			Destination:  SubscriptionPrefix + id,
			Agency:       s.agency(sub),
			Purpose:      s.o.Purpose,
			Event:        string(ev.Kind),
			ResourceType: ev.ResourceType,
			ResourceID:   ev.ID,
			Version:      ev.Version,
			Patient:      ev.Patient,
			CreatedAt:    at,
		})
	}
	return out, nil
}

func (s *Subscriptions) matches(ctx context.Context, criteria string, ev routing.Event) (bool, error) {
	typ, query, _ := strings.Cut(strings.TrimSpace(criteria), "?")
	if typ != ev.ResourceType {
		return false, nil
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return false, err
	}
	if len(params) == 0 {
		return true, nil
	}
	if ev.Kind == routing.Delete || ev.Resource == nil {
		return false, nil
	}
	if s.o.Match == nil {
		return false, errors.New("criteria with search parameters need a matcher")
	}
	return s.o.Match.Match(ctx, typ, params, ev.Resource)
}

func (s *Subscriptions) agency(sub map[string]any) string {
	if s.o.Agency != nil {
		return s.o.Agency(sub)
	}
	src := str(obj(sub["meta"]), "source")
	if i := strings.LastIndexAny(src, "/#"); i >= 0 {
		src = src[i+1:]
	}
	if s.o.Config != nil && src != "" {
		for _, a := range s.o.Config.Agencies {
			if a.ID == src || strings.EqualFold(a.ODS, src) {
				return a.ID
			}
		}
	}
	return ""
}

// Target resolves a Subscription destination ("Subscription/{id}") to its channel.
func (s *Subscriptions) Target(ctx context.Context, destination string) (Target, error) {
	id := strings.TrimPrefix(destination, SubscriptionPrefix)
	subs, err := s.load(ctx, false)
	if err != nil {
		return Target{}, err
	}
	sub, ok := subs[id]
	if !ok {
		if subs, err = s.load(ctx, true); err != nil {
			return Target{}, err
		}
		sub, ok = subs[id]
	}
	if !ok {
		return Target{}, Permanentf("Subscription/%s no longer exists", id)
	}
	if !s.live(sub) {
		return Target{}, Permanentf("Subscription/%s is %s, not notified", id, orDefault(str(sub, "status"), "without status"))
	}
	ch := obj(sub["channel"])
	t := Target{
		Endpoint:     config.Endpoint{ID: destination, Type: TypeRestHook, URL: str(ch, "endpoint")},
		AgencyID:     s.agency(sub),
		Header:       http.Header{},
		MimeType:     str(ch, "payload"),
		PayloadMode:  PayloadEmpty,
		Subscription: id,
	}
	if t.Endpoint.URL == "" {
		return Target{}, Permanentf("Subscription/%s has no channel endpoint", id)
	}
	for _, h := range list(ch["header"]) {
		hs, _ := h.(string)
		name, value, ok := strings.Cut(hs, ":")
		if ok && strings.TrimSpace(name) != "" {
			t.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	if t.MimeType != "" {
		t.PayloadMode = PayloadFull
	}
	for _, e := range list(obj(ch["_payload"])["extension"]) {
		if em := obj(e); str(em, "url") == ExtPayloadContent {
			t.PayloadMode = str(em, "valueCode")
		}
	}
	return t, nil
}

// Outcome records the result of an attempt to notify a Subscription and changes its status
// when that changes: active on success, error after FailureThreshold consecutive failures.
func (s *Subscriptions) Outcome(ctx context.Context, id string, sendErr error) {
	s.mu.Lock()
	var status, text string
	if sendErr == nil {
		s.failures[id] = 0
		if s.status[id] != "active" {
			status = "active"
		}
	} else {
		s.failures[id]++
		if s.failures[id] >= s.o.FailureThreshold && s.status[id] != "error" {
			status = "error"
			text = fmt.Sprintf("%d consecutive notifications failed; last: %v", s.failures[id], sendErr)
		}
	}
	if status != "" {
		s.status[id] = status
	}
	s.mu.Unlock()
	if status == "" || s.o.SetStatus == nil {
		return
	}
	if err := s.o.SetStatus(ctx, id, status, text); err != nil {
		s.o.Logger.Error("recording Subscription status", zap.String("subscription", id), zap.String("status", status), zap.Error(err))
		s.mu.Lock()
		delete(s.status, id) // try again on the next outcome
		s.mu.Unlock()
		return
	}
	s.o.Logger.Info("Subscription status changed", zap.String("subscription", id), zap.String("status", status), zap.String("error", text))
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}
