// Package engine holds the FHIR interaction semantics (create, read, update, patch, delete,
// history, search, batch and transaction, operations) independent of any transport: HTTP, the
// CLI and tests all call Handle.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/searchparam"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Indexer extracts the search index rows of a resource.
type Indexer interface {
	Index(typ string, res map[string]any) (store.Index, error)
}

// Types knows which resource types exist.
type Types interface {
	IsResource(name string) bool
	ResourceTypes() []string
}

// Summaries knows which top-level elements _summary=true keeps and which are mandatory.
type Summaries interface {
	SummaryElements(typ string) []string
	MandatoryElements(typ string) []string
}

// Limits bound request sizes.
type Limits struct {
	MaxBodyBytes    int64 // enforced by the transport; reported in errors and metadata
	MaxDepth        int
	MaxEntries      int // Bundle entries in a batch or transaction
	DefaultCount    int
	MaxCount        int
	MaxSavedResults int // result ids kept for paging one search
	PageTTL         time.Duration
}

// DefaultLimits are the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes:    16 << 20,
		MaxDepth:        64,
		MaxEntries:      10000,
		DefaultCount:    50,
		MaxCount:        1000,
		MaxSavedResults: 10000,
		PageTTL:         30 * time.Minute,
	}
}

// Config wires an Engine.
type Config struct {
	Store   store.Store
	Checker *resource.Checker
	Indexer Indexer
	Params  *searchparam.Registry
	Types   Types
	// Discloser, when set, filters what authenticated requests may see.
	Discloser Discloser
	// Security is the CapabilityStatement.rest.security element describing authentication.
	Security map[string]any
	// Operations adds named operations, keyed by operationKey ("Patient/{id}/$access-check").
	Operations map[string]Operation
	// Capability is what the CapabilityStatements are made of besides the engine itself.
	Capability CapabilityConfig
	// Searches serves type-level searches of types kept outside the resource store
	// (AuditEvent from the audit trail). Such types are read-only: every write of one,
	// directly or in a Bundle, is refused with 405.
	Searches map[string]Operation
	// Reads serves instance reads of types kept outside the store; a type in Searches without
	// a Read answers reads 404.
	Reads map[string]Operation
	// Resolvers, by resource type, look up outside the broker what a search by one
	// identifier found nothing for (the Patient fallback to the PDS).
	Resolvers map[string]Resolver
	// OnWrite runs inside every write transaction after the version is stored (routing's
	// outbox); an error rolls the write back.
	OnWrite func(ctx context.Context, tx store.Tx, ev WriteEvent) error
	// AfterCommit runs after every write transaction commits (to wake the outbox relay).
	AfterCommit func()
	// Checks run on every resource written, after structural validation (Consent checks).
	Checks []func(typ string, res map[string]any) []outcome.Issue
	// Transitions check a change of a resource of the keyed type against the version it
	// replaces, inside the write transaction, so the previous version cannot change
	// underneath (workflow state machines, such as a referral Task's status). a is who
	// writes (nil for the broker's own writes); prev is nil for a create or a write after a
	// deletion. An error (an *outcome.Error for the client) rolls the write back.
	Transitions map[string]func(a *Access, prev, next map[string]any) error
	// Consequences, by resource type, derive from a stored change (prev nil for a create,
	// next nil for a deletion) the changes the broker makes to other resources because of
	// it. They are written inside the same transaction, validated, indexed and routed like
	// any write (WriteEvent.Cause set), with a Provenance each; the writer needs no scope on
	// them. An error rolls the whole write back.
	Consequences map[string]func(prev, next map[string]any) []Consequence
	// Summary is optional; without it _summary=true drops only the narrative.
	Summary Summaries
	Limits  Limits
	Clock   func() time.Time
	NewID   func() string
	// Validator, when set, serves $validate and validates writes as Validation says.
	Validator  Validator
	Validation Validation
	// Software names the server in the CapabilityStatement.
	Software, Version string
}

// Engine executes FHIR interactions.
type Engine struct {
	cfg     Config
	started time.Time
	// capCache holds the server's encoded CapabilityStatement per base URL.
	capMu    sync.Mutex
	capCache map[string][]byte
	// ops are the operations served; opdefs their definitions, encoded, by id.
	ops    []OperationInfo
	opdefs map[string][]byte
}

// New returns an engine; missing optional dependencies get defaults.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Checker == nil || cfg.Indexer == nil || cfg.Params == nil || cfg.Types == nil {
		return nil, errors.New("engine: store, checker, indexer, params and types are required")
	}
	def := DefaultLimits()
	if cfg.Limits.MaxDepth == 0 {
		cfg.Limits.MaxDepth = def.MaxDepth
	}
	if cfg.Limits.MaxEntries == 0 {
		cfg.Limits.MaxEntries = def.MaxEntries
	}
	if cfg.Limits.DefaultCount == 0 {
		cfg.Limits.DefaultCount = def.DefaultCount
	}
	if cfg.Limits.MaxCount == 0 {
		cfg.Limits.MaxCount = def.MaxCount
	}
	if cfg.Limits.MaxSavedResults == 0 {
		cfg.Limits.MaxSavedResults = def.MaxSavedResults
	}
	if cfg.Limits.PageTTL == 0 {
		cfg.Limits.PageTTL = def.PageTTL
	}
	if cfg.Limits.MaxBodyBytes == 0 {
		cfg.Limits.MaxBodyBytes = def.MaxBodyBytes
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.NewID == nil {
		// Time-ordered (version 7) UUIDs: new resources' keys land at the end of the store's
		// id indexes rather than on a random page of them, which kept ingest from slowing
		// as the store grew.
		cfg.NewID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	if cfg.Validator != nil {
		mode, err := ParseValidationMode(cfg.Validation.Mode)
		if err != nil {
			return nil, err
		}
		cfg.Validation.Mode = mode
	}
	if cfg.Software == "" {
		cfg.Software = "hjbroker"
	}
	defs, err := indexDefinitions(cfg.Capability.OperationDefinitions)
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, started: cfg.Clock(), ops: servedOperations(cfg), opdefs: defs, capCache: map[string][]byte{}}, nil
}

// Limits returns the limits in force.
func (e *Engine) Limits() Limits { return e.cfg.Limits }

// Request is one FHIR interaction as received.
type Request struct {
	Method string
	// Path is below the FHIR base, without leading slash: "Patient/1/_history/2".
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// Base is the absolute FHIR base URL used in links and fullUrls.
	Base string
	// Access is who asks and why; nil for the broker's own requests.
	Access *Access

	sess DisclosureSession
}

// Response is the outcome of an interaction. Either Body (already encoded, as stored) or
// Resource is set, or neither for an empty body.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte
	Resource map[string]any
	// Interaction names what was done, for metrics and logs ("read", "search-type", ...).
	Interaction string
	// Patients lists the patients whose data was disclosed, and BreakGlass whether an
	// emergency override was needed, for the audit trail.
	Patients   []string
	BreakGlass bool
}

func (r *Response) setHeader(k, v string) {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set(k, v)
}

// errorResponse turns any error into an OperationOutcome response.
func errorResponse(err error) *Response {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		switch {
		case errors.Is(err, store.ErrRetry):
			oe = outcome.New(http.StatusConflict, "conflict", "a concurrent update changed this resource; retry the request")
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			oe = outcome.New(http.StatusServiceUnavailable, "timeout", "the request was cancelled or timed out")
		default:
			oe = outcome.New(http.StatusInternalServerError, "exception", "internal error: %v", err)
		}
	}
	return &Response{Status: oe.Status, Resource: outcome.Resource(oe.Issues)}
}

// Handle executes one interaction and never returns nil.
func (e *Engine) Handle(ctx context.Context, req *Request) *Response {
	if req.Query == nil {
		req.Query = url.Values{}
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Access != nil {
		ctx = context.WithValue(ctx, accessKey{}, req.Access)
	}
	resp := e.handle(ctx, req)
	if pr, ok := req.sess.(PatientRecorder); ok {
		resp.Patients = pr.Patients()
		resp.BreakGlass = pr.BreakGlassUsed()
	}
	return resp
}

func (e *Engine) handle(ctx context.Context, req *Request) *Response {
	resp, err := e.dispatch(ctx, req)
	var q *quarantineError
	if errors.As(err, &q) {
		r := e.quarantine(ctx, req, q)
		if resp != nil {
			r.Interaction = resp.Interaction
		}
		return r
	}
	if err != nil {
		r := errorResponse(err)
		if resp != nil && resp.Interaction != "" {
			r.Interaction = resp.Interaction
		}
		return r
	}
	return resp
}

func (e *Engine) dispatch(ctx context.Context, req *Request) (*Response, error) {
	path := strings.Trim(req.Path, "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	for i, s := range seg {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, outcome.New(http.StatusBadRequest, "invalid", "bad path segment %q", s)
		}
		seg[i] = u
	}
	m := req.Method
	if m == http.MethodHead {
		m = http.MethodGet // HEAD is GET without the body, on every path GET serves
	}
	notAllowed := func(what string) (*Response, error) {
		return &Response{Interaction: what}, outcome.New(http.StatusMethodNotAllowed, "not-supported", "%s is not supported on %s", m, "/"+path)
	}
	if len(seg) > 0 && conformanceTypes[seg[0]] && !strings.HasPrefix(seg[len(seg)-1], "$") {
		return e.conformance(ctx, req, seg)
	}
	if err := e.authorize(req, seg); err != nil {
		return &Response{Interaction: "authorization"}, err
	}
	if len(seg) > 0 && e.kept(seg[0]) && !strings.HasPrefix(seg[len(seg)-1], "$") {
		return e.keptElsewhere(ctx, req, m, seg, notAllowed)
	}
	switch len(seg) {
	case 0:
		switch m {
		case http.MethodGet:
			return e.search(ctx, req, "")
		case http.MethodPost:
			return e.bundle(ctx, req)
		}
		return notAllowed("system")
	case 1:
		switch s := seg[0]; {
		case s == "metadata":
			if m != http.MethodGet {
				return notAllowed("capabilities")
			}
			return e.capabilities(req)
		case s == "_history":
			if m != http.MethodGet {
				return notAllowed("history-system")
			}
			return e.history(ctx, req, "", "")
		case s == "_search":
			if m != http.MethodPost {
				return notAllowed("search-system")
			}
			return e.search(ctx, req, "")
		case strings.HasPrefix(s, "$"):
			return e.operation(ctx, req, "", "", s[1:])
		}
		typ := seg[0]
		if err := e.checkType(typ); err != nil {
			return nil, err
		}
		switch m {
		case http.MethodGet:
			return e.search(ctx, req, typ)
		case http.MethodPost:
			return e.create(ctx, req, typ)
		case http.MethodPut:
			return e.conditionalUpdate(ctx, req, typ)
		case http.MethodPatch:
			return e.conditionalPatch(ctx, req, typ)
		case http.MethodDelete:
			return e.conditionalDelete(ctx, req, typ)
		}
		return notAllowed("type")
	}
	typ := seg[0]
	if err := e.checkType(typ); err != nil {
		return nil, err
	}
	if len(seg) == 2 {
		switch s := seg[1]; {
		case s == "_search":
			if m != http.MethodPost {
				return notAllowed("search-type")
			}
			return e.search(ctx, req, typ)
		case s == "_history":
			if m != http.MethodGet {
				return notAllowed("history-type")
			}
			return e.history(ctx, req, typ, "")
		case strings.HasPrefix(s, "$"):
			return e.operation(ctx, req, typ, "", s[1:])
		}
		id := seg[1]
		if err := checkID(id); err != nil {
			return nil, err
		}
		switch m {
		case http.MethodGet, http.MethodHead:
			return e.read(ctx, req, typ, id)
		case http.MethodPut:
			return e.update(ctx, req, typ, id)
		case http.MethodPatch:
			return e.patch(ctx, req, typ, id)
		case http.MethodDelete:
			return e.delete(ctx, req, typ, id)
		}
		return notAllowed("instance")
	}
	id := seg[1]
	if err := checkID(id); err != nil {
		return nil, err
	}
	switch {
	case len(seg) == 3 && seg[2] == "_history":
		if m != http.MethodGet {
			return notAllowed("history-instance")
		}
		return e.history(ctx, req, typ, id)
	case len(seg) == 3 && strings.HasPrefix(seg[2], "$"):
		return e.operation(ctx, req, typ, id, seg[2][1:])
	case len(seg) == 4 && seg[2] == "_history":
		if m != http.MethodGet && m != http.MethodHead {
			return notAllowed("vread")
		}
		v, err := strconv.ParseInt(seg[3], 10, 64)
		if err != nil || v < 1 {
			return nil, outcome.New(http.StatusBadRequest, "invalid", "version %q is not a positive integer", seg[3])
		}
		return e.vread(ctx, req, typ, id, v)
	}
	return nil, outcome.New(http.StatusNotFound, "not-found", "no FHIR interaction at /%s", path)
}

func (e *Engine) checkType(typ string) error {
	if !e.cfg.Types.IsResource(typ) {
		return outcome.New(http.StatusNotFound, "not-supported", "%q is not an R4 resource type", typ)
	}
	return nil
}

// checkID applies the R4 id rule: 1 to 64 of [A-Za-z0-9\-\.].
func checkID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return outcome.New(http.StatusBadRequest, "invalid", "id %q must be 1 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return outcome.New(http.StatusBadRequest, "invalid", "id %q may only contain A-Z, a-z, 0-9, '-' and '.'", id)
		}
	}
	return nil
}

// operation runs a named $operation.
func (e *Engine) operation(ctx context.Context, req *Request, typ, id, name string) (*Response, error) {
	switch {
	case name == "everything" && typ == "Patient" && id != "" && (req.Method == http.MethodGet || req.Method == http.MethodPost):
		return e.everything(ctx, req, id)
	case name == "validate":
		return e.validateOp(ctx, req, typ, id)
	}
	if op, ok := e.cfg.Operations[operationKey(typ, id != "", name)]; ok {
		resp, err := op(ctx, req, typ, id)
		if resp == nil {
			resp = &Response{}
		}
		if resp.Interaction == "" {
			resp.Interaction = "operation"
		}
		return resp, err
	}
	where := "the server"
	if typ != "" {
		where = typ
	}
	if id != "" {
		where += "/" + id
	}
	return &Response{Interaction: "operation"}, outcome.New(http.StatusNotFound, "not-supported", "operation $%s is not supported on %s", name, where)
}

// etag renders a version as a weak ETag.
func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

// parseETag reads W/"n" or "n".
func parseETag(s string) (int64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad ETag %q", s)
	}
	return v, nil
}

// instant renders a time as a FHIR instant with microseconds.
func instant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

func errNotFound(typ, id string) error {
	return outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
}
