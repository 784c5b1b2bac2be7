package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Stages of the pathway, in story order. Every step belongs to one.
const (
	StageArrival    = "arrival"
	StageSCR        = "scr-lookup"
	StageClinical   = "clinical-entries"
	StageScreening  = "ld-screening"
	StageReferral   = "referral"
	StageProbation  = "probation"
	StageCourt      = "court-report"
	StageRelease    = "release"
	StageGPHandBack = "gp-hand-back"
)

// Timeline is what a demo run did, step by step, and what came of it.
type Timeline struct {
	Started time.Time `json:"started"`
	// ElapsedMS is the wall time of the whole run, in milliseconds.
	ElapsedMS int64 `json:"elapsedMs"`
	// Nodes are the broker nodes the steps went to; Receivers the agency receivers by
	// endpoint id.
	Nodes     []string          `json:"nodes"`
	Receivers map[string]string `json:"receivers"`
	// Spine is the Spine simulator's URL when the nodes use one.
	Spine   string  `json:"spine,omitempty"`
	Patient string  `json:"patient,omitempty"`
	Steps   []*Step `json:"steps"`
	Summary Summary `json:"summary"`
	// Problems are what did not go as the pathway expects (a delivery that did not arrive,
	// a request that failed); a run without problems succeeded.
	Problems []string `json:"problems,omitempty"`
}

// Step is one thing an agency does, through the API, and the deliveries it caused.
type Step struct {
	N      int    `json:"n"`
	Stage  string `json:"stage"`
	Title  string `json:"title"`
	Client string `json:"client"`
	Agency string `json:"agency"`
	// Node is the index of the broker node the step's requests went to.
	Node       int        `json:"node"`
	Actions    []Action   `json:"actions,omitempty"`
	Deliveries []Delivery `json:"deliveries,omitempty"`
	Notes      []string   `json:"notes,omitempty"`
	Skipped    string     `json:"skipped,omitempty"`
	Problems   []string   `json:"problems,omitempty"`
	ElapsedMS  int64      `json:"elapsedMs"`

	started time.Time
	stored  []string
	expect  []expectDel
}

// Action is one HTTP interaction of a step.
type Action struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	// As names the client when it is not the step's own (a check by another agency).
	As string `json:"as,omitempty"`
	// Stored lists the versions the interaction wrote ("Patient/1/_history/1").
	Stored []string `json:"stored,omitempty"`
	// Result says what the answer held, for people.
	Result string `json:"result,omitempty"`
}

// Delivery is one routed delivery of a version a step wrote, as the delivery log ends it.
type Delivery struct {
	ID       string `json:"id"`
	Resource string `json:"resource"`
	Route    string `json:"route"`
	Purpose  string `json:"purpose"`
	Endpoint string `json:"endpoint"`
	Agency   string `json:"agency"`
	// State is delivered, withheld or dead when the delivery ended; pending or retrying when
	// it had not ended by the deadline.
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
	LastError string `json:"lastError,omitempty"`
	Attempts  int    `json:"attempts"`
	// Received is set when the agency's receiver recorded the delivery.
	Received bool `json:"received"`
	// Consequence marks the delivery of a change the broker made itself because of the
	// step (not a version the step's requests wrote).
	Consequence bool `json:"consequence,omitempty"`
}

// Summary counts what the run stored and delivered.
type Summary struct {
	Steps     int `json:"steps"`
	Skipped   int `json:"skipped"`
	Stored    int `json:"stored"`
	Delivered int `json:"delivered"`
	Withheld  int `json:"withheld"`
	Failed    int `json:"failed"`
	// ReceivedBy counts the deliveries each agency's receiver recorded; Repeats the
	// redeliveries receivers saw again under a request id they already had.
	ReceivedBy map[string]int `json:"receivedBy"`
	Repeats    int            `json:"repeats"`
}

// OK reports whether the run had no problems.
func (t *Timeline) OK() bool { return len(t.Problems) == 0 }

// Stage returns the steps of one stage.
func (t *Timeline) Stage(stage string) []*Step {
	var out []*Step
	for _, s := range t.Steps {
		if s.Stage == stage {
			out = append(out, s)
		}
	}
	return out
}

// WriteJSON writes the timeline as one JSON document.
func (t *Timeline) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// WriteText writes the timeline for people. verbose adds every HTTP interaction, delivery
// ids and attempt counts.
func (t *Timeline) WriteText(w io.Writer, verbose bool) error {
	p := &printer{w: w, full: verbose}
	p.line("hjbroker demo: one person's custody-to-court pathway, through the broker's FHIR API")
	p.line("  broker     %s", strings.Join(t.Nodes, ", "))
	ids := make([]string, 0, len(t.Receivers))
	for id := range t.Receivers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p.line("  receiver   %-20s %s", id, t.Receivers[id])
	}
	if t.Spine != "" {
		p.line("  spine      %-20s %s (PDS and SCR test patients; the demo GP is their practice)", "simulator", t.Spine)
	}
	for _, s := range t.Steps {
		p.line("")
		node := ""
		if len(t.Nodes) > 1 {
			node = fmt.Sprintf(", node %d", s.Node+1)
		}
		p.line("%2d. %s", s.N, s.Title)
		p.line("    by %s (%s)%s", s.Client, s.Agency, node)
		if s.Skipped != "" {
			p.line("    - skipped: %s", s.Skipped)
			continue
		}
		for _, a := range s.Actions {
			if verbose || len(a.Stored) > 0 || a.Result != "" {
				as := ""
				if a.As != "" {
					as = "  as " + a.As
				}
				p.line("    %-6s %-58s %d%s", a.Method, shorten(p.ids(readablePath(a.Path)), 58), a.Status, as)
			}
			if verbose || len(a.Stored) <= 3 {
				for _, st := range a.Stored {
					p.line("           stored    %s", version(st))
				}
			} else {
				p.line("           stored    %s", countTypes(a.Stored))
			}
			if a.Result != "" {
				p.line("           %s", a.Result)
			}
		}
		for _, g := range groupDeliveries(s.Deliveries, verbose) {
			d := g[0]
			res := version(d.Resource)
			if len(g) > 1 {
				refs := make([]string, len(g))
				for i, x := range g {
					refs[i] = x.Resource
				}
				res = countTypes(refs)
			}
			what := fmt.Sprintf("%s to %s (%s)", res, d.Agency, d.Endpoint)
			if d.Consequence {
				what = fmt.Sprintf("%s, which the broker wrote as a consequence, to %s (%s)", res, d.Agency, d.Endpoint)
			}
			why := fmt.Sprintf("route %s, purpose %s", d.Route, d.Purpose)
			switch d.State {
			case "delivered":
				p.line("    -> delivered  %s", what)
				p.line("                  %s", why)
			case "withheld":
				p.line("    xx withheld   %s", what)
				p.line("                  %s; %s", why, d.Reason)
			default:
				p.line("    !! %-9s %s", d.State, what)
				p.line("                  %s; %s", why, strings.TrimSpace(d.LastError+" "+d.Reason))
			}
			if verbose {
				p.line("                  delivery %s, %d attempt(s), received by the agency: %v", d.ID, d.Attempts, d.Received)
			}
		}
		for _, n := range s.Notes {
			p.line("    note: %s", n)
		}
		for _, pr := range s.Problems {
			p.line("    PROBLEM: %s", pr)
		}
		if verbose {
			p.line("    (%d ms)", s.ElapsedMS)
		}
	}
	sm := t.Summary
	p.line("")
	p.line("Summary")
	p.line("  %d steps (%d skipped), %d resource versions stored", sm.Steps, sm.Skipped, sm.Stored)
	p.line("  deliveries: %d delivered, %d withheld by consent or sharing rules, %d failed", sm.Delivered, sm.Withheld, sm.Failed)
	agencies := make([]string, 0, len(sm.ReceivedBy))
	for a := range sm.ReceivedBy {
		agencies = append(agencies, a)
	}
	sort.Strings(agencies)
	for _, a := range agencies {
		p.line("  %-44s received %d", a, sm.ReceivedBy[a])
	}
	if sm.Repeats > 0 {
		p.line("  receivers saw %d repeated deliveries (same request id) and kept one of each", sm.Repeats)
	}
	p.line("  finished in %.1f s", float64(t.ElapsedMS)/1000)
	if len(t.Problems) == 0 {
		p.line("  no problems: every delivery ended and every delivered resource reached its agency")
	} else {
		p.line("  %d problem(s):", len(t.Problems))
		for _, pr := range t.Problems {
			p.line("  - %s", pr)
		}
	}
	return p.err
}

// brief shortens the ids in references ("Type/id") and search values ("patient=id") in s to their
// first 8 characters, which tell one resource of the run from another.
func brief(s string) string {
	return longID.ReplaceAllStringFunc(s, func(m string) string { return m[:9] })
}

var longID = regexp.MustCompile(`[/=][0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// version turns "Type/id/_history/v" into "Type/id v<v>".
func version(ref string) string {
	if r, v, ok := strings.Cut(ref, "/_history/"); ok {
		return r + " v" + v
	}
	return ref
}

// groupDeliveries puts consecutive deliveries that went the same way (state, endpoint,
// route, reason) together, so that a transaction's twelve deliveries read as one line;
// verbose keeps each apart.
func groupDeliveries(ds []Delivery, verbose bool) [][]Delivery {
	var out [][]Delivery
	for _, d := range ds {
		if n := len(out); n > 0 && !verbose {
			last := out[n-1][0]
			if last.State == d.State && last.Endpoint == d.Endpoint && last.Route == d.Route && last.Reason == d.Reason && last.LastError == d.LastError &&
				last.Consequence == d.Consequence {
				out[n-1] = append(out[n-1], d)
				continue
			}
		}
		out = append(out, []Delivery{d})
	}
	return out
}

// countTypes sums up versions by resource type, in order of first appearance:
// "7 Observation, 2 Condition".
func countTypes(versions []string) string {
	n := map[string]int{}
	var order []string
	for _, v := range versions {
		t, _, _ := strings.Cut(v, "/")
		if n[t] == 0 {
			order = append(order, t)
		}
		n[t]++
	}
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = fmt.Sprintf("%d %s", n[t], t)
	}
	return strings.Join(parts, ", ")
}

// readablePath shows a request path with its query unescaped.
func readablePath(p string) string {
	if u, err := url.QueryUnescape(p); err == nil {
		return u
	}
	return p
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

type printer struct {
	w io.Writer
	// full keeps resource ids whole; otherwise they are shortened for reading.
	full bool
	err  error
}

// ids shortens resource ids unless the printer keeps them whole.
func (p *printer) ids(s string) string {
	if p.full {
		return s
	}
	return brief(s)
}

func (p *printer) line(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintln(p.w, p.ids(fmt.Sprintf(format, args...)))
}
