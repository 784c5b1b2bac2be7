package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// client speaks to the broker's HTTP API as the demo clients, one token per client.
type client struct {
	env  *Env
	http *http.Client

	mu     sync.Mutex
	tokens map[string]string
}

func newClient(env *Env) *client {
	return &client{env: env, http: &http.Client{Timeout: 30 * time.Second}, tokens: map[string]string{}}
}

func (c *client) token(ctx context.Context, clientID string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[clientID]; ok {
		return t, nil
	}
	t, err := c.env.Token(ctx, clientID)
	if err != nil {
		return "", fmt.Errorf("getting an access token for %s: %w", clientID, err)
	}
	c.tokens[clientID] = t
	return t, nil
}

// response is an answer of the broker, its body decoded when it is JSON.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

// outcomeText is the diagnostics of an OperationOutcome answer, for messages.
func (r *response) outcomeText() string {
	var parts []string
	for _, is := range list(r.JSON["issue"]) {
		m := obj(is)
		if m["severity"] != "error" && m["severity"] != "fatal" {
			continue
		}
		s, _ := m["diagnostics"].(string)
		if ex := list(m["expression"]); len(ex) > 0 {
			s = fmt.Sprintf("%v: %s", ex[0], s)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return strings.TrimSpace(string(r.Raw))
	}
	return strings.Join(parts, "; ")
}

// do sends one request to a node as clientID. path is relative to the node's root
// ("/fhir/Patient", "/admin/deliveries").
func (c *client) do(ctx context.Context, node int, clientID, method, path string, body any, headers ...string) (*response, error) {
	tok, err := c.token(ctx, clientID)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the body of %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.env.Nodes[node]+path, rd)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	r := &response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.JSON) // not every answer is JSON; Raw keeps it
	}
	return r, nil
}

// operations reads the CapabilityStatement of a node: the operations it registers, as
// "Type/$name" for type and instance operations and "$name" for system ones.
func (c *client) operations(ctx context.Context, node int) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.env.Nodes[node]+"/fhir/metadata", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the CapabilityStatement: %w", err)
	}
	defer resp.Body.Close()
	var cs map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the CapabilityStatement: HTTP %d %v", resp.StatusCode, err)
	}
	ops := map[string]bool{}
	for _, rest := range list(cs["rest"]) {
		for _, op := range list(obj(rest)["operation"]) {
			if n, _ := obj(op)["name"].(string); n != "" {
				ops["$"+strings.TrimPrefix(n, "$")] = true
			}
		}
		for _, res := range list(obj(rest)["resource"]) {
			typ, _ := obj(res)["type"].(string)
			for _, op := range list(obj(res)["operation"]) {
				if n, _ := obj(op)["name"].(string); n != "" {
					ops[typ+"/$"+strings.TrimPrefix(n, "$")] = true
				}
			}
		}
	}
	return ops, nil
}

// query encodes search parameters given as name, value pairs, in order.
func query(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	return b.String()
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
