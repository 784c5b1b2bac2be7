// Package spinesim simulates the Spine-style services the broker calls — the PDS and SCR FHIR
// APIs and the platform's token endpoint — for tests, demos and integrators, with a fixed set
// of test patients (docs/spine.md lists them). The token endpoint verifies signed JWT client
// assertions against the public keys it is started with; every API call needs a token it
// issued, an X-Request-ID UUID, and is recorded so tests can assert what was sent.
package spinesim

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Client is an application registered with the simulated platform: its API key (the client
// id) and the public key, by key id, its client assertions are verified with.
type Client struct {
	ID    string
	KeyID string
	Key   *rsa.PublicKey
}

// Options configure a simulator.
type Options struct {
	// Clients are the registered applications; a simulator without any refuses every token.
	Clients []Client
	// TokenTTL is the life of an access token (default 10 minutes).
	TokenTTL time.Duration
	// SlowDelay is how long the slow test patients keep a request waiting (default 30s; a
	// request whose caller gives up earlier ends then).
	SlowDelay time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Request is one API call as the simulator received it.
type Request struct {
	Method, Path  string
	Query         url.Values
	RequestID     string
	CorrelationID string
	// ClientID is the application the bearer token was issued to ("" when none was valid).
	ClientID string
	Status   int
}

// Fault is a failure the simulator answers with instead of the normal answer, injected by a
// test with Fail.
type Fault struct {
	// Status is the HTTP status; Code the Spine error code in details.coding (none when
	// empty: the SCR service puts most 4xx messages in details.text only).
	Status int
	Code   string
	// Text is the diagnostics or details.text.
	Text string
	// RetryAfter is sent as the Retry-After header when set.
	RetryAfter string
	// Garbage answers with a body that is not JSON.
	Garbage bool
}

// Server is a simulator. Use Handler to serve it, or Start.
type Server struct {
	opts    Options
	clients map[string]Client // by kid

	mu       sync.Mutex
	tokens   map[string]issued
	jtis     map[string]bool
	requests []Request
	alerts   []map[string]any
	faults   map[string][]Fault // by service + "|" + NHS number
	seenIDs  map[string]int     // X-Request-IDs of the throttled test patient
	issuedN  int
}

type issued struct {
	client string
	until  time.Time
}

// New returns a simulator.
func New(opts Options) (*Server, error) {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 10 * time.Minute
	}
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, clients: map[string]Client{}, tokens: map[string]issued{}, jtis: map[string]bool{},
		faults: map[string][]Fault{}, seenIDs: map[string]int{}}
	for _, c := range opts.Clients {
		switch {
		case c.ID == "" || c.KeyID == "" || c.Key == nil:
			return nil, errors.New("spinesim: a client needs an id, a key id and a public key")
		case s.clients[c.KeyID].ID != "":
			return nil, fmt.Errorf("spinesim: key id %q is registered twice", c.KeyID)
		}
		s.clients[c.KeyID] = c
	}
	return s, nil
}

// Handler serves the token endpoint and both APIs under the platform's paths.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", s.token)
	mux.HandleFunc("GET /personal-demographics/FHIR/R4/Patient/{id}", s.api("pds", s.pdsRead))
	mux.HandleFunc("GET /personal-demographics/FHIR/R4/Patient", s.api("pds", s.pdsSearch))
	mux.HandleFunc("GET /summary-care-record/FHIR/R4/DocumentReference", s.api("scr", s.scrPointer))
	mux.HandleFunc("GET /summary-care-record/FHIR/R4/Bundle", s.api("scr", s.scrBundle))
	mux.HandleFunc("POST /summary-care-record/FHIR/R4/AuditEvent", s.api("scr", s.scrAlert))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, "not-found", pdsSystem, "RESOURCE_NOT_FOUND", "no simulated service at "+r.URL.Path)
	})
	return mux
}

// Fail makes the next calls of a service ("pds" or "scr") about an NHS number answer with
// the faults, one per call, before answering normally again. Service "token" with an empty
// number fails the token endpoint's next requests.
func (s *Server) Fail(service, nhsNumber string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := service + "|" + nhsNumber
	s.faults[k] = append(s.faults[k], faults...)
}

func (s *Server) nextFault(service, nhsNumber string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := service + "|" + nhsNumber
	fs := s.faults[k]
	if len(fs) == 0 {
		return Fault{}, false
	}
	s.faults[k] = fs[1:]
	return fs[0], true
}

// Requests returns the API calls received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Alerts returns the privacy alerts (AuditEvents) received so far.
func (s *Server) Alerts() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.alerts...)
}

// TokensIssued counts the access tokens issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuedN
}

// Running is a simulator listening on a port.
type Running struct {
	*Server
	// URL is the platform base URL (http://127.0.0.1:PORT), what the broker's HJB_SPINE_URL
	// names.
	URL string
	srv *http.Server
}

// Start listens on addr (127.0.0.1:0, a free loopback port, when empty) and serves until
// Close.
func Start(addr string, opts Options) (*Running, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("spinesim: listening on %s: %w", addr, err)
	}
	r := &Running{Server: s, URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go r.srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed on Close
	return r, nil
}

// Close stops the listener and ends requests in flight (the slow patients' included).
func (r *Running) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		return r.srv.Close()
	}
	return nil
}
