// Package apptest starts real broker nodes for tests: an httptest server over the embedded
// store or a fresh PostgreSQL database, and a small FHIR client for assertions.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// Server is a running node.
type Server struct {
	*httptest.Server
	Node *app.Node
	Base string // .../fhir
	// As is the client whose token Do sends by default ("operator", who may do anything);
	// a request with its own Authorization header (even empty) sends that instead.
	As     string
	t      testing.TB
	tokens map[string]string
}

// Token returns an access token for a configured client, minted once per server.
func (s *Server) Token(client string) string {
	s.t.Helper()
	if tok, ok := s.tokens[client]; ok {
		return tok
	}
	tok, err := s.Node.Token(context.Background(), client)
	if err != nil {
		s.t.Fatalf("minting a token for %s: %v", client, err)
	}
	if s.tokens == nil {
		s.tokens = map[string]string{}
	}
	s.tokens[client] = tok
	return tok
}

// DoAs sends a request with client's token.
func (s *Server) DoAs(client, method, path string, body any, headers ...string) *Result {
	s.t.Helper()
	return s.Do(method, path, body, append([]string{"Authorization: Bearer " + s.Token(client)}, headers...)...)
}

// Start runs a node on backend b until the test ends.
func Start(t testing.TB, b storetest.Backend, cfg app.Config) *Server {
	t.Helper()
	cfg.StoreURL, cfg.DataDir = b.StoreURL, b.DataDir
	node, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting node on %s: %v", b.Name, err)
	}
	ts := httptest.NewServer(node.Handler)
	t.Cleanup(func() {
		ts.Close()
		node.Close()
	})
	return &Server{Server: ts, Node: node, Base: ts.URL + "/fhir", t: t}
}

// ForEachBackend runs fn as a subtest against a node on every backend.
func ForEachBackend(t *testing.T, fn func(t *testing.T, s *Server)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, Start(t, b, app.Config{}))
		})
	}
}

// Result is an HTTP response with its body decoded when it is JSON.
type Result struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

// Do sends a request. body may be a string, []byte or a value to encode as JSON. Headers
// come as "Name: value" strings; a JSON body defaults to application/fhir+json.
func (s *Server) Do(method, path string, body any, headers ...string) *Result {
	s.t.Helper()
	var rd io.Reader
	var isJSON bool
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		isJSON = true
	case []byte:
		rd = bytes.NewReader(b)
		isJSON = true
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("encoding body: %v", err)
		}
		rd = bytes.NewReader(raw)
		isJSON = true
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = s.Base + "/" + strings.TrimPrefix(path, "/")
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		s.t.Fatalf("building request: %v", err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	explicitAuth := false
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.EqualFold(k, "Authorization") {
			explicitAuth = true
			if v == "" {
				continue
			}
		}
		req.Header.Set(k, v)
	}
	if !explicitAuth && strings.HasPrefix(u, s.URL) {
		as := s.As
		if as == "" {
			as = "operator"
		}
		req.Header.Set("Authorization", "Bearer "+s.Token(as))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := &Result{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		_ = dec.Decode(&r.JSON)
	}
	return r
}

// Want fails the test unless the status is want, showing the body.
func (r *Result) Want(t testing.TB, want int) *Result {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Raw)
	}
	return r
}

// Str reads a string at a dotted path with numeric indexes ("entry.0.resource.id").
func (r *Result) Str(path string) string {
	s, _ := Get(r.JSON, path).(string)
	return s
}

// Get walks a decoded JSON value by a dotted path.
func Get(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i := 0
			for _, c := range part {
				if c < '0' || c > '9' {
					return nil
				}
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// Entries returns Bundle.entry.
func (r *Result) Entries() []any {
	e, _ := r.JSON["entry"].([]any)
	return e
}

// Total returns Bundle.total, or -1.
func (r *Result) Total() int {
	n, ok := r.JSON["total"].(json.Number)
	if !ok {
		return -1
	}
	i, _ := n.Int64()
	return int(i)
}

// IssueExpressions lists every issue.expression of an OperationOutcome.
func (r *Result) IssueExpressions() []string {
	var out []string
	issues, _ := r.JSON["issue"].([]any)
	for _, is := range issues {
		ex, _ := Get(is, "expression").([]any)
		for _, e := range ex {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
