package auth

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hjbroker/hjbroker/broker/config"
)

// Client is a registered API client as the authenticator sees it.
type Client struct {
	ID         string
	AgencyID   string
	AgencyKind string
	// Scopes are the most the client may be granted.
	Scopes Scopes
	// Purposes are the purposes of use the client may claim: those configured, or when none
	// are, every purpose of the sharing rules that cover its agency.
	Purposes []string
	keys     []clientKey
}

// HasKeys reports whether the client can authenticate at the token endpoint.
func (c *Client) HasKeys() bool { return len(c.keys) > 0 }

// Registry holds the configured clients by id.
type Registry struct {
	clients map[string]*Client
	// scopes is every scope any client may be granted, for the SMART configuration.
	scopes []string
}

// NewRegistry reads the clients of a configuration. A relative jwksFile is resolved against
// the directory of the configuration file (cfg.Source) when that is a file, else against the
// working directory.
func NewRegistry(cfg *config.Config) (*Registry, error) {
	baseDir := ""
	if fi, err := os.Stat(cfg.Source); err == nil && !fi.IsDir() {
		baseDir = filepath.Dir(cfg.Source)
	}
	r := &Registry{clients: map[string]*Client{}}
	all := map[string]bool{}
	for _, a := range cfg.Agencies {
		for _, cc := range a.Clients {
			c, err := newClient(cfg, a, cc, baseDir)
			if err != nil {
				return nil, fmt.Errorf("client %q: %w", cc.ID, err)
			}
			r.clients[c.ID] = c
			for _, s := range c.Scopes {
				all[s.String()] = true
			}
		}
	}
	for s := range all {
		r.scopes = append(r.scopes, s)
	}
	sort.Strings(r.scopes)
	return r, nil
}

func newClient(cfg *config.Config, a config.Agency, cc config.Client, baseDir string) (*Client, error) {
	scopes, ignored, err := ParseScopes(cc.Scopes...)
	if err != nil {
		return nil, err
	}
	if len(ignored) > 0 {
		return nil, fmt.Errorf("scope %q is not a resource scope", ignored[0])
	}
	for _, s := range scopes {
		if s.Context != "system" {
			return nil, fmt.Errorf("scope %s: backend clients take system scopes only", s)
		}
	}
	c := &Client{ID: cc.ID, AgencyID: a.ID, AgencyKind: a.Kind, Scopes: scopes, Purposes: cc.Purposes}
	if len(c.Purposes) == 0 {
		c.Purposes = rulePurposes(cfg, a)
	}
	var raw []byte
	switch {
	case cc.JWKSFile != "":
		path := cc.JWKSFile
		if !filepath.IsAbs(path) && baseDir != "" {
			path = filepath.Join(baseDir, path)
		}
		if raw, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading jwksFile: %w", err)
		}
	case cc.JWKS != nil:
		if raw, err = json.Marshal(cc.JWKS); err != nil {
			return nil, err
		}
	}
	if raw != nil {
		if c.keys, err = parseJWKS(raw); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// rulePurposes collects the purposes of the sharing rules that name the agency or its kind.
func rulePurposes(cfg *config.Config, a config.Agency) []string {
	set := map[string]bool{}
	for _, r := range cfg.Sharing {
		if contains(r.Agencies, a.ID) || contains(r.AgencyKinds, a.Kind) {
			for _, p := range r.Purposes {
				set[p] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Client returns a registered client.
func (r *Registry) Client(id string) (*Client, bool) {
	c, ok := r.clients[id]
	return c, ok
}
