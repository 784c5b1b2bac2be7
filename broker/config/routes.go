package config

import (
	"fmt"
	"strings"
)

// checkRoutes finds route and endpoint problems the schema cannot: unknown agencies and
// endpoints, duplicate ids, and `on` fields that do not fit the events named.
func (c *Config) checkRoutes(agencies map[string]bool) []Problem {
	var probs []Problem
	endpoints := map[string]string{} // endpoint id -> agency id
	for i, a := range c.Agencies {
		for j, e := range a.Endpoints {
			// Endpoint ids name queue destinations, so they are unique across agencies.
			if other, dup := endpoints[e.ID]; dup {
				probs = append(probs, Problem{Path: fmt.Sprintf("agencies[%d].endpoints[%d].id", i, j),
					Message: fmt.Sprintf("endpoint id %q is already used by agency %q", e.ID, other)})
				continue
			}
			endpoints[e.ID] = a.ID
		}
	}
	routes := map[string]bool{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if routes[r.ID] {
			probs = append(probs, Problem{Path: p + ".id", Message: fmt.Sprintf("route id %q is used twice", r.ID)})
		}
		routes[r.ID] = true
		probs = append(probs, checkOn(p+".on", r.On)...)
		for j, f := range r.From {
			if !agencies[f] && !validKind(f) {
				probs = append(probs, Problem{Path: fmt.Sprintf("%s.from[%d]", p, j), Message: fmt.Sprintf("%q is neither an agency id nor an agency kind", f)})
			}
		}
		for j, to := range r.To {
			tp := fmt.Sprintf("%s.to[%d]", p, j)
			if agency, ep, ok := strings.Cut(to, "/"); ok {
				switch owner, known := endpoints[ep]; {
				case !agencies[agency]:
					probs = append(probs, Problem{Path: tp, Message: fmt.Sprintf("no agency has id %q", agency)})
				case !known || owner != agency:
					probs = append(probs, Problem{Path: tp, Message: fmt.Sprintf("agency %q has no endpoint %q", agency, ep)})
				}
				continue
			}
			if !agencies[to] && !validKind(to) {
				probs = append(probs, Problem{Path: tp, Message: fmt.Sprintf("%q is neither an agency id, an agency kind nor agency/endpoint", to)})
			}
		}
	}
	return probs
}

func checkOn(p string, on RouteOn) []Problem {
	var probs []Problem
	crud := on.Event.Has(EventCreate) || on.Event.Has(EventUpdate) || on.Event.Has(EventDelete)
	if crud && len(on.Resource) == 0 {
		probs = append(probs, Problem{Path: p, Message: "create, update and delete events need resource (the resource types to match)"})
	}
	if on.Event.Has(EventMessage) && len(on.MessageEvent) == 0 {
		probs = append(probs, Problem{Path: p, Message: "message events need messageEvent (the MessageHeader event codes to match)"})
	}
	if !on.Event.Has(EventMessage) && len(on.MessageEvent) > 0 {
		probs = append(probs, Problem{Path: p + ".messageEvent", Message: "messageEvent applies only to the message event"})
	}
	if !on.Event.Has(EventTaskStatus) && len(on.TaskStatus) > 0 {
		probs = append(probs, Problem{Path: p + ".taskStatus", Message: "taskStatus applies only to the task-status event"})
	}
	return probs
}
