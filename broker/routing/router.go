package routing

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
)

// Router matches events against the configured routes. It is immutable after New and safe
// for concurrent use.
type Router struct {
	cfg        *config.Config
	routes     []*route
	transforms *Transforms
	newID      func() string
	now        func() time.Time
	onError    func(route string, err error)
}

// route is a configured route with its criteria compiled and destinations resolved.
type route struct {
	def      config.Route
	criteria *fhirpath.Expression
	dests    []dest
}

type dest struct{ agency, endpoint string }

// Option configures a Router.
type Option func(*Router)

// WithTransforms sets the registry route transforms are checked against (default
// NewTransforms()); pass the one the delivery workers use.
func WithTransforms(t *Transforms) Option { return func(r *Router) { r.transforms = t } }

// WithIDs replaces the UUID generator for Delivery.ID (tests use a fixed sequence).
func WithIDs(f func() string) Option { return func(r *Router) { r.newID = f } }

// WithClock replaces time.Now for Delivery.CreatedAt.
func WithClock(f func() time.Time) Option { return func(r *Router) { r.now = f } }

// WithErrorHandler receives criteria that fail to evaluate on a resource (for example a
// singleton rule broken by a list). Such a route does not match: the failure is a property
// of the resource and the expression, so retrying would not help, and the resource's write
// must not fail because of a routing rule.
func WithErrorHandler(f func(route string, err error)) Option {
	return func(r *Router) { r.onError = f }
}

// New compiles the routes of cfg. FHIRPath criteria are compiled with fp (which may be nil
// when no route has criteria), resource types are checked against fp's model, and transform
// names against the Transforms registry. Every problem is reported as a *config.Error naming
// the path and line of the route.
func New(cfg *config.Config, fp *fhirpath.Engine, opts ...Option) (*Router, error) {
	r := &Router{
		cfg:        cfg,
		transforms: NewTransforms(),
		newID:      uuid.NewString,
		now:        time.Now,
		onError:    func(string, error) {},
	}
	for _, o := range opts {
		o(r)
	}
	transforms := r.transforms
	var probs []config.Problem
	for i, def := range cfg.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		cr := &route{def: def}
		if fp != nil {
			for j, t := range def.On.Resource {
				if !fp.Model().IsResource(t) {
					path := fmt.Sprintf("%s.on.resource", p)
					if len(def.On.Resource) > 1 {
						path = fmt.Sprintf("%s[%d]", path, j)
					}
					probs = append(probs, cfg.Problem(path, fmt.Sprintf("%q is not an R4 resource type", t)))
				}
			}
		}
		if def.Criteria != "" {
			if fp == nil {
				probs = append(probs, cfg.Problem(p+".criteria", "criteria need a FHIRPath engine"))
			} else if x, err := fp.Compile(def.Criteria); err != nil {
				probs = append(probs, cfg.Problem(p+".criteria", "FHIRPath: "+err.Error()))
			} else {
				cr.criteria = x
			}
		}
		if _, ok := transforms.Lookup(def.Transform); !ok {
			probs = append(probs, cfg.Problem(p+".transform",
				fmt.Sprintf("unknown transform %q (known: %s)", def.Transform, strings.Join(transforms.Names(), ", "))))
		}
		cr.dests = resolve(cfg, def.To)
		if len(cr.dests) == 0 {
			probs = append(probs, cfg.Problem(p+".to", "no endpoint: none of the agencies named has endpoints"))
		}
		r.routes = append(r.routes, cr)
	}
	if len(probs) > 0 {
		return nil, &config.Error{Source: cfg.Source, Problems: probs}
	}
	return r, nil
}

// resolve expands route destinations into endpoints, in the order named and then in the
// order of the configuration, without repeats.
func resolve(cfg *config.Config, to []string) []dest {
	var out []dest
	seen := map[string]bool{}
	add := func(agency, endpoint string) {
		if !seen[endpoint] {
			seen[endpoint] = true
			out = append(out, dest{agency: agency, endpoint: endpoint})
		}
	}
	for _, t := range to {
		if agency, ep, ok := strings.Cut(t, "/"); ok {
			if e, a, found := cfg.Endpoint(ep); found && a.ID == agency {
				add(a.ID, e.ID)
			}
			continue
		}
		for _, a := range cfg.Agencies {
			if a.ID == t || a.Kind == t {
				for _, e := range a.Endpoints {
					add(a.ID, e.ID)
				}
			}
		}
	}
	return out
}

// Match returns the deliveries an event causes: for each matching route in configuration
// order, one delivery per destination endpoint. An endpoint receives at most one delivery
// per event (the first matching route's), and never one of the agency that made the change.
func (r *Router) Match(ev Event) []Delivery {
	var out []Delivery
	seen := map[string]bool{}
	patient := ev.Patient
	if patient == "" && ev.ResourceType == "Patient" && ev.ID != "" {
		patient = "Patient/" + ev.ID
	}
	for _, rt := range r.routes {
		if !r.matches(rt, ev) {
			continue
		}
		transform := rt.def.Transform
		if transform == TransformNone {
			transform = ""
		}
		for _, d := range rt.dests {
			if d.agency == ev.SourceAgency || seen[d.endpoint] {
				continue
			}
			seen[d.endpoint] = true
			out = append(out, Delivery{
				ID:           r.newID(),
				Route:        rt.def.ID,
				Destination:  d.endpoint,
				Agency:       d.agency,
				SourceAgency: ev.SourceAgency,
				Purpose:      rt.def.Purpose,
				Transform:    transform,
				Event:        string(ev.Kind),
				ResourceType: ev.ResourceType,
				ResourceID:   ev.ID,
				Version:      ev.Version,
				Patient:      patient,
				CreatedAt:    r.now().UTC(),
			})
		}
	}
	return out
}

func (r *Router) matches(rt *route, ev Event) bool {
	on := rt.def.On
	if !on.Event.Has(string(ev.Kind)) {
		return false
	}
	if len(on.Resource) > 0 && !on.Resource.Has(ev.ResourceType) {
		return false
	}
	if len(on.MessageEvent) > 0 && !on.MessageEvent.Has(ev.MessageEvent) {
		return false
	}
	if len(on.TaskStatus) > 0 && !on.TaskStatus.Has(ev.TaskStatus) {
		return false
	}
	if len(rt.def.From) > 0 && !r.fromMatches(rt.def.From, ev.SourceAgency) {
		return false
	}
	// Profile and criteria look at the resource, which a delete does not have.
	if rt.def.Profile != "" && (ev.Resource == nil || !hasProfile(ev.Resource, rt.def.Profile)) {
		return false
	}
	if rt.criteria != nil {
		if ev.Resource == nil {
			return false
		}
		ok, err := rt.criteria.EvaluateBool(ev.Resource)
		if err != nil {
			r.onError(rt.def.ID, err)
			return false
		}
		return ok
	}
	return true
}

func (r *Router) fromMatches(from []string, source string) bool {
	if source == "" {
		return false
	}
	a, known := r.cfg.Agency(source)
	for _, f := range from {
		if f == source || (known && f == a.Kind) {
			return true
		}
	}
	return false
}

// hasProfile reports whether meta.profile lists url, with or without a |version suffix.
func hasProfile(res map[string]any, url string) bool {
	meta, _ := res["meta"].(map[string]any)
	profiles, _ := meta["profile"].([]any)
	for _, p := range profiles {
		s, _ := p.(string)
		if s == url || strings.HasPrefix(s, url+"|") {
			return true
		}
	}
	return false
}
