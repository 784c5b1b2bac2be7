// Package sink holds small in-process FHIR receivers that stand in for an agency's system:
// they accept what the broker delivers (fhir-rest transaction Bundles, fhir-message Bundles
// at $process-message, rest-hook PUTs and DELETEs) and record what arrived, so that a demo
// or a test can show and check what each agency received.
package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Kinds of request a sink records.
const (
	KindTransaction = "transaction" // fhir-rest: a transaction Bundle POSTed to the base
	KindMessage     = "message"     // fhir-message: a message Bundle POSTed to $process-message
	KindPut         = "put"         // rest-hook with full resource: PUT {type}/{id}
	KindDelete      = "delete"      // a transaction entry or request that deletes
)

// maxBody bounds what a sink reads from one request.
const maxBody = 8 << 20

// Received is one delivery accepted by a sink.
type Received struct {
	// RequestID is the X-Request-ID the broker sent: its delivery id, the same on every
	// attempt, so a repeated delivery is recognised.
	RequestID string    `json:"requestId"`
	At        time.Time `json:"at"`
	Kind      string    `json:"kind"`
	// Event is the MessageHeader.eventCoding code of a message.
	Event string `json:"event,omitempty"`
	// Resources are the delivered resources (a message's focus, not its MessageHeader);
	// Deleted names "Type/id" of deletions.
	Resources []map[string]any `json:"resources,omitempty"`
	Deleted   []string         `json:"deleted,omitempty"`
}

// Refs lists "Type/id" of the delivered resources and deletions.
func (r Received) Refs() []string {
	out := make([]string, 0, len(r.Resources)+len(r.Deleted))
	for _, res := range r.Resources {
		out = append(out, Ref(res))
	}
	return append(out, r.Deleted...)
}

// Ref is "Type/id" of a resource.
func Ref(res map[string]any) string {
	t, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	return t + "/" + id
}

// Sink is one agency's receiver. Start it with Start; the zero value is not usable.
type Sink struct {
	name string
	ln   net.Listener
	srv  *http.Server

	mu       sync.Mutex
	got      []Received
	seen     map[string]bool
	repeats  int
	rejected int
	changed  chan struct{}
}

// Start listens on a loopback port and serves until Close. name is for messages.
func Start(name string) (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the %s receiver: %w", name, err)
	}
	s := &Sink{name: name, ln: ln, seen: map[string]bool{}, changed: make(chan struct{})}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed on Close
	return s, nil
}

// Name is the name the sink was started with.
func (s *Sink) Name() string { return s.name }

// Base is the sink's FHIR base URL, for an endpoint's url.
func (s *Sink) Base() string { return "http://" + s.ln.Addr().String() + "/fhir" }

// Close stops the receiver.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Received returns the deliveries accepted so far, one per request id, in arrival order.
func (s *Sink) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.got...)
}

// Get returns the delivery received under a request id.
func (s *Sink) Get(requestID string) (Received, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.got {
		if r.RequestID == requestID {
			return r, true
		}
	}
	return Received{}, false
}

// Repeats counts requests that repeated a request id already accepted (at-least-once
// redeliveries); they are answered as successes and not recorded again.
func (s *Sink) Repeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repeats
}

// Rejected counts requests the sink refused as malformed.
func (s *Sink) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Wait polls until cond holds of what was received, or ctx ends; its error says what the
// sink had received by then.
func (s *Sink) Wait(ctx context.Context, cond func([]Received) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.got)
		ch, n := s.changed, len(s.got)
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("the %s receiver has %d deliveries, not the ones awaited: %w", s.name, n, ctx.Err())
		}
	}
}

// ServeHTTP accepts deliveries under /fhir.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/fhir")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		s.refuse(w, http.StatusRequestEntityTooLarge, "too-costly", "", "the request body is unreadable or larger than 8 MiB")
		return
	}
	rec := Received{RequestID: r.Header.Get("X-Request-ID"), At: time.Now().UTC()}
	var reply any
	switch {
	case r.Method == http.MethodPost && (path == "" || path == "/"):
		doc, ok := s.bundle(w, body, "transaction")
		if !ok {
			return
		}
		rec.Kind = KindTransaction
		var out []any
		for i, e := range list(doc["entry"]) {
			entry, _ := e.(map[string]any)
			req, _ := entry["request"].(map[string]any)
			method, _ := req["method"].(string)
			url, _ := req["url"].(string)
			res, _ := entry["resource"].(map[string]any)
			switch {
			case method == http.MethodDelete && url != "":
				rec.Deleted = append(rec.Deleted, url)
				out = append(out, map[string]any{"response": map[string]any{"status": "204 No Content"}})
			case (method == http.MethodPut || method == http.MethodPost) && res != nil:
				rec.Resources = append(rec.Resources, res)
				out = append(out, map[string]any{"response": map[string]any{"status": "200 OK", "location": Ref(res)}})
			default:
				s.refuse(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Bundle.entry[%d]", i), "an entry needs request.method PUT or POST with a resource, or DELETE with a url")
				return
			}
		}
		reply = map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": out}
	case r.Method == http.MethodPost && path == "/$process-message":
		doc, ok := s.bundle(w, body, "message")
		if !ok {
			return
		}
		rec.Kind = KindMessage
		entries := list(doc["entry"])
		first, _ := entries[0].(map[string]any)
		mh, _ := first["resource"].(map[string]any)
		if mh["resourceType"] != "MessageHeader" {
			s.refuse(w, http.StatusBadRequest, "structure", "Bundle.entry[0].resource", "a message Bundle starts with its MessageHeader")
			return
		}
		ev, _ := mh["eventCoding"].(map[string]any)
		rec.Event, _ = ev["code"].(string)
		for _, e := range entries[1:] {
			entry, _ := e.(map[string]any)
			if res, ok := entry["resource"].(map[string]any); ok {
				rec.Resources = append(rec.Resources, res)
			}
		}
		for _, f := range list(mh["focus"]) {
			ref, _ := f.(map[string]any)["reference"].(string)
			if len(rec.Resources) == 0 && ref != "" && !strings.HasPrefix(ref, "urn:") {
				rec.Deleted = append(rec.Deleted, ref)
			}
		}
		mhID, _ := mh["id"].(string)
		reply = map[string]any{"resourceType": "Bundle", "type": "message", "entry": []any{map[string]any{"resource": map[string]any{
			"resourceType": "MessageHeader",
			"eventCoding":  mh["eventCoding"],
			"source":       map[string]any{"endpoint": s.Base()},
			"response":     map[string]any{"identifier": mhID, "code": "ok"},
		}}}}
	case r.Method == http.MethodPut && strings.Count(strings.Trim(path, "/"), "/") == 1:
		var res map[string]any
		if json.Unmarshal(body, &res) != nil || res["resourceType"] == nil {
			s.refuse(w, http.StatusBadRequest, "structure", "", "the body is not a FHIR resource in JSON")
			return
		}
		rec.Kind = KindPut
		rec.Resources = []map[string]any{res}
		reply = res
	case r.Method == http.MethodDelete && strings.Count(strings.Trim(path, "/"), "/") == 1:
		rec.Kind = KindDelete
		rec.Deleted = []string{strings.Trim(path, "/")}
	default:
		s.refuse(w, http.StatusNotFound, "not-supported", "", fmt.Sprintf("%s %s is not something this receiver accepts", r.Method, r.URL.Path))
		return
	}
	s.record(rec)
	w.Header().Set("Content-Type", "application/fhir+json")
	if reply == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	json.NewEncoder(w).Encode(reply) //nolint:errcheck // the broker sees a broken reply as a failed attempt
}

// bundle decodes a Bundle of the wanted type with at least one entry, or refuses the request.
func (s *Sink) bundle(w http.ResponseWriter, body []byte, typ string) (map[string]any, bool) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		s.refuse(w, http.StatusBadRequest, "structure", "", "the body is not JSON: "+err.Error())
		return nil, false
	}
	if doc["resourceType"] != "Bundle" || doc["type"] != typ {
		s.refuse(w, http.StatusBadRequest, "invalid", "Bundle.type", "expected a Bundle of type "+typ)
		return nil, false
	}
	if len(list(doc["entry"])) == 0 {
		s.refuse(w, http.StatusBadRequest, "required", "Bundle.entry", "the Bundle has no entries")
		return nil, false
	}
	return doc, true
}

func (s *Sink) record(rec Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.RequestID != "" && s.seen[rec.RequestID] {
		s.repeats++
		return
	}
	if rec.RequestID != "" {
		s.seen[rec.RequestID] = true
	}
	s.got = append(s.got, rec)
	close(s.changed)
	s.changed = make(chan struct{})
}

// refuse answers with an OperationOutcome and counts the refusal.
func (s *Sink) refuse(w http.ResponseWriter, status int, code, expression, msg string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	issue := map[string]any{"severity": "error", "code": code, "diagnostics": msg}
	if expression != "" {
		issue["expression"] = []string{expression}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome", "issue": []any{issue}}) //nolint:errcheck
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}
