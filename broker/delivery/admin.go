package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/routing"
)

// ErrNotDead: only dead deliveries can be replayed.
var ErrNotDead = errors.New("delivery: only a dead delivery can be replayed")

// maxDeadLetters bounds the dead letters read for one replay.
const maxDeadLetters = 100000

// AdminOptions configure the admin API and replay.
type AdminOptions struct {
	Queue  queue.Queue
	Log    *Log
	Config *config.Config
	// Worker adds this node's view of endpoint health to GET /endpoints (optional).
	Worker *Worker
	Logger *zap.Logger
}

// Admin shows delivery states and replays dead letters. As an http.Handler (mounted by the
// caller under a prefix it strips, e.g. /admin) it serves:
//
//	GET  /deliveries?state=&destination=&patient=&limit=  deliveries, newest first
//	GET  /deliveries/{id}                                 one delivery
//	POST /deliveries/{id}/replay                          replay one dead delivery
//	POST /endpoints/{id}/replay                           replay every dead letter of an endpoint
//	GET  /endpoints                                       queue figures and states per endpoint
type Admin struct {
	o   AdminOptions
	mux *http.ServeMux
}

// NewAdmin returns the admin API.
func NewAdmin(o AdminOptions) *Admin {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	a := &Admin{o: o, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /deliveries", a.list)
	a.mux.HandleFunc("GET /deliveries/{id}", a.get)
	a.mux.HandleFunc("POST /deliveries/{id}/replay", a.replayOne)
	a.mux.HandleFunc("POST /endpoints/{id}/replay", a.replayEndpoint)
	a.mux.HandleFunc("GET /endpoints", a.endpoints)
	return a
}

func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// ReplayDelivery moves one dead delivery back to its queue.
func (a *Admin) ReplayDelivery(ctx context.Context, id string) error {
	e, err := a.o.Log.Get(ctx, id)
	if err != nil {
		return err
	}
	if e.State != routing.Dead {
		return fmt.Errorf("%w (%s is %s)", ErrNotDead, id, e.State)
	}
	msgs, err := a.o.Queue.DeadLetters(ctx, e.Destination, maxDeadLetters)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if deliveryID(m) != id {
			continue
		}
		n, err := a.replay(ctx, e.Destination, []string{m.ID}, []string{id})
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		return nil
	}
	return fmt.Errorf("%w: delivery %s is not among the dead letters of %s", queue.ErrNotFound, id, e.Destination)
}

// ReplayEndpoint moves every dead letter of an endpoint back to its queue and returns how
// many moved.
func (a *Admin) ReplayEndpoint(ctx context.Context, endpoint string) (int, error) {
	msgs, err := a.o.Queue.DeadLetters(ctx, endpoint, maxDeadLetters)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	ids := make([]string, len(msgs))
	dids := make([]string, 0, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
		if d := deliveryID(m); d != "" {
			dids = append(dids, d)
		}
	}
	return a.replay(ctx, endpoint, ids, dids)
}

// replay marks the deliveries pending, then moves their dead letters back to the queue. In
// that order: a worker (on this node or another) may deliver a replayed message at once, and
// marking them pending afterwards would overwrite its "delivered". When nothing moves, or the
// queue fails, the deliveries go back to dead.
func (a *Admin) replay(ctx context.Context, endpoint string, msgIDs, deliveryIDs []string) (int, error) {
	if a.o.Log != nil {
		if err := a.o.Log.transition(ctx, routing.Dead, routing.Pending, "replayed", deliveryIDs...); err != nil {
			return 0, err
		}
	}
	n, err := a.o.Queue.Replay(ctx, endpoint, msgIDs...)
	if (err != nil || n == 0) && a.o.Log != nil {
		// Best effort: the deliveries did not leave the dead letters.
		if rerr := a.o.Log.transition(context.WithoutCancel(ctx), routing.Pending, routing.Dead, "replay failed", deliveryIDs...); rerr != nil && err == nil {
			err = rerr
		}
	}
	return n, err
}

// deliveryID reads the delivery id of a queue message.
func deliveryID(m queue.Message) string {
	var d routing.Delivery
	if json.Unmarshal(m.Body, &d) == nil && d.ID != "" {
		return d.ID
	}
	return m.IdempotencyKey
}

func (a *Admin) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := Filter{State: routing.State(q.Get("state")), Destination: q.Get("destination"), Patient: q.Get("patient")}
	if f.State != "" && !slices.Contains([]routing.State{routing.Pending, routing.Delivered, routing.Retrying, routing.Dead, routing.Withheld}, f.State) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state %q is not one of pending, delivered, retrying, dead, withheld", f.State))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 1000")
			return
		}
		f.Limit = n
	}
	es, err := a.o.Log.List(r.Context(), f)
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": es})
}

func (a *Admin) get(w http.ResponseWriter, r *http.Request) {
	e, err := a.o.Log.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNoDelivery) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *Admin) replayOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := a.ReplayDelivery(r.Context(), id)
	switch {
	case errors.Is(err, ErrNoDelivery):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrNotDead), errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		a.internal(w, err)
	default:
		a.o.Logger.Info("delivery replayed", zap.String("delivery", id))
		writeJSON(w, http.StatusOK, map[string]any{"replayed": 1})
	}
}

func (a *Admin) replayEndpoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.known(r.Context(), id) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %q", id))
		return
	}
	n, err := a.ReplayEndpoint(r.Context(), id)
	if err != nil {
		a.internal(w, err)
		return
	}
	a.o.Logger.Info("dead letters replayed", zap.String("endpoint", id), zap.Int("count", n))
	writeJSON(w, http.StatusOK, map[string]any{"replayed": n})
}

// EndpointStatus is one endpoint's line in GET /endpoints.
type EndpointStatus struct {
	ID          string                `json:"id"`
	Agency      string                `json:"agency,omitempty"`
	Type        string                `json:"type,omitempty"`
	URL         string                `json:"url,omitempty"`
	Depth       int                   `json:"depth"`
	Oldest      string                `json:"oldest,omitempty"`
	DeadLetters int                   `json:"deadLetters"`
	States      map[routing.State]int `json:"states"`
	Health      *Health               `json:"health,omitempty"`
}

// Endpoints reports every configured endpoint and every other queue destination.
func (a *Admin) Endpoints(ctx context.Context) ([]EndpointStatus, error) {
	var out []EndpointStatus
	seen := map[string]bool{}
	if a.o.Config != nil {
		for _, ag := range a.o.Config.Agencies {
			for _, ep := range ag.Endpoints {
				seen[ep.ID] = true
				out = append(out, EndpointStatus{ID: ep.ID, Agency: ag.ID, Type: ep.Type, URL: ep.URL})
			}
		}
	}
	dests, err := a.o.Queue.Destinations(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		if !seen[d] {
			seen[d] = true
			out = append(out, EndpointStatus{ID: d})
		}
	}
	for i := range out {
		s := &out[i]
		st, err := a.o.Queue.Stats(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		s.Depth, s.DeadLetters = st.Depth, st.DeadLetters
		if !st.Oldest.IsZero() {
			s.Oldest = st.Oldest.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		if a.o.Log != nil {
			if s.States, err = a.o.Log.Counts(ctx, s.ID); err != nil {
				return nil, err
			}
		}
		if a.o.Worker != nil {
			h := a.o.Worker.Health(s.ID)
			s.Health = &h
		}
	}
	return out, nil
}

func (a *Admin) endpoints(w http.ResponseWriter, r *http.Request) {
	es, err := a.Endpoints(r.Context())
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": es})
}

func (a *Admin) known(ctx context.Context, id string) bool {
	if a.o.Config != nil {
		for _, ag := range a.o.Config.Agencies {
			for _, ep := range ag.Endpoints {
				if ep.ID == id {
					return true
				}
			}
		}
	}
	if strings.HasPrefix(id, SubscriptionPrefix) {
		return true
	}
	dests, err := a.o.Queue.Destinations(ctx)
	return err == nil && slices.Contains(dests, id)
}

func (a *Admin) internal(w http.ResponseWriter, err error) {
	a.o.Logger.Error("delivery admin request failed", zap.Error(err))
	writeError(w, http.StatusInternalServerError, "the request failed; see the broker log")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
