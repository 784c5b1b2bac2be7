package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/adapters/sink"
	"github.com/hjbroker/hjbroker/broker/config"
)

// Env is where a story runs: the broker nodes, how to get tokens for the demo clients, the
// agency configuration in force and the receivers standing in for the agencies' systems.
type Env struct {
	// Nodes are the roots of the broker nodes ("http://127.0.0.1:8080"); steps go to them in
	// turn, so with two nodes consecutive steps are served by different nodes.
	Nodes []string
	// Token returns an access token for a configured client.
	Token func(ctx context.Context, clientID string) (string, error)
	// Config is the agency configuration the nodes run with (routes, endpoints, agencies).
	Config *config.Config
	// Receivers are the agency receivers by endpoint id.
	Receivers map[string]*sink.Sink
	// Wait bounds each wait for a step's deliveries to end (default 20 s).
	Wait time.Duration
	// Operator is the client that reads the delivery log (default "operator").
	Operator string
	// Spine is the base URL of the Spine (simulator) the nodes use, for the timeline; empty
	// when they use none.
	Spine string
}

// runner carries one run of the story.
type runner struct {
	env  *Env
	c    *client
	tl   *Timeline
	ops  map[string]bool
	step *Step

	ids ids
	// arrived is when the person arrived in custody.
	arrived time.Time
	// seen are the versions the run has recorded as stored.
	seen map[string]bool
}

// ids are the resources the story creates, as "Type/id".
type ids struct {
	patient, encounter, assessment, referral, task, report string
}

// lacking names the first of the required results ("patient,task") the run does not have.
func (r *runner) lacking(required string) string {
	have := map[string]string{"patient": r.ids.patient, "encounter": r.ids.encounter, "assessment": r.ids.assessment,
		"task": r.ids.task, "report": r.ids.report}
	for _, name := range strings.Split(required, ",") {
		if v, known := have[name]; name != "" && (!known || v == "") {
			return name
		}
	}
	return ""
}

// errStep ends a step whose request failed; the step records why.
var errStep = errors.New("step failed")

// Story runs the pathway against env and returns the timeline. Its error is for the run
// as a whole (no node answers); what goes wrong within steps is in Timeline.Problems.
func Story(ctx context.Context, env Env) (*Timeline, error) {
	if len(env.Nodes) == 0 {
		return nil, errors.New("demo: no broker nodes to run against")
	}
	if env.Wait == 0 {
		env.Wait = 20 * time.Second
	}
	if env.Operator == "" {
		env.Operator = "operator"
	}
	r := &runner{env: &env, seen: map[string]bool{}, tl: &Timeline{Started: time.Now().UTC(), Nodes: env.Nodes, Spine: env.Spine, Receivers: map[string]string{}}}
	r.c = newClient(r.env)
	for id, s := range env.Receivers {
		r.tl.Receivers[id] = s.Base()
	}
	ops, err := r.c.operations(ctx, 0)
	if err != nil {
		return nil, err
	}
	r.ops = ops
	for _, st := range story() {
		if ctx.Err() != nil {
			return r.tl, ctx.Err()
		}
		r.begin(st)
		if st.needs != "" && !r.ops[st.needs] {
			r.step.Skipped = fmt.Sprintf("not available in this build (the broker does not offer %s)", st.needs)
		} else if lack := r.lacking(st.requires); lack != "" {
			r.step.Skipped = fmt.Sprintf("cannot run: an earlier step did not record the %s", lack)
			r.problem("skipped: no %s to work on", lack)
		} else if err := st.run(ctx, r); err != nil && !errors.Is(err, errStep) {
			r.problem("%v", err)
		}
		r.end(ctx)
	}
	r.finish()
	r.tl.ElapsedMS = time.Since(r.tl.Started).Milliseconds()
	return r.tl, nil
}

// scene is one step of the story.
type scene struct {
	stage, title, client string
	// requires names the earlier results the step works on ("patient,encounter"): without
	// them it is skipped as a problem rather than run on nothing.
	requires string
	// needs names an operation ("Patient/$summary") without which the step is skipped.
	needs string
	run   func(ctx context.Context, r *runner) error
}

func (r *runner) begin(sc scene) {
	ag := sc.client
	if _, a, ok := r.env.Config.Client(sc.client); ok {
		ag = a.Name
	}
	n := len(r.tl.Steps)
	r.step = &Step{N: n + 1, Stage: sc.stage, Title: sc.title, Client: sc.client, Agency: ag, Node: n % len(r.env.Nodes), started: time.Now()}
	r.tl.Steps = append(r.tl.Steps, r.step)
}

func (r *runner) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.step.Problems = append(r.step.Problems, msg)
	r.tl.Problems = append(r.tl.Problems, fmt.Sprintf("step %d (%s): %s", r.step.N, r.step.Title, msg))
}

func (r *runner) note(format string, args ...any) {
	r.step.Notes = append(r.step.Notes, fmt.Sprintf(format, args...))
}

// call sends a FHIR request as the step's client to the step's node and records it; an
// answer other than want is a problem and ends the step (errStep).
func (r *runner) call(ctx context.Context, want int, method, path string, body any, headers ...string) (*response, error) {
	return r.callAs(ctx, r.step.Client, want, method, path, body, headers...)
}

// callAs is call as another client (a check made by someone other than the step's actor).
func (r *runner) callAs(ctx context.Context, clientID string, want int, method, path string, body any, headers ...string) (*response, error) {
	resp, err := r.c.do(ctx, r.step.Node, clientID, method, "/fhir/"+strings.TrimPrefix(path, "/"), body, headers...)
	if err != nil {
		r.problem("%v", err)
		return nil, errStep
	}
	a := Action{Method: method, Path: path, Status: resp.Status}
	if path == "" {
		a.Path = "(transaction Bundle)"
	}
	if clientID != r.step.Client {
		a.As = clientID
	}
	if method != http.MethodGet && resp.Status < 300 {
		// A version seen before is one the write matched (a conditional create), not a new one.
		for _, v := range storedVersions(resp) {
			if !r.seen[v] {
				r.seen[v] = true
				a.Stored = append(a.Stored, v)
			}
		}
		r.step.stored = append(r.step.stored, a.Stored...)
	}
	r.step.Actions = append(r.step.Actions, a)
	if resp.Status != want {
		r.problem("%s %s answered %d, want %d: %s", method, path, resp.Status, want, shorten(resp.outcomeText(), 400))
		return resp, errStep
	}
	return resp, nil
}

// stored records a version the last action wrote that its answer did not name (an
// operation answering with something other than the resource).
func (r *runner) stored(version string) {
	if r.seen[version] {
		return
	}
	r.seen[version] = true
	if n := len(r.step.Actions); n > 0 {
		r.step.Actions[n-1].Stored = append(r.step.Actions[n-1].Stored, version)
	}
	r.step.stored = append(r.step.stored, version)
}

// result sets what the last action's answer held.
func (r *runner) result(format string, args ...any) {
	if n := len(r.step.Actions); n > 0 {
		r.step.Actions[n-1].Result = fmt.Sprintf(format, args...)
	}
}

// storedVersions lists the versions a write answered with: the locations of a
// transaction-response's entries, or the one the Location header or the resource names.
func storedVersions(resp *response) []string {
	if resp.JSON["resourceType"] == "Bundle" && strings.HasSuffix(str(resp.JSON, "type"), "-response") {
		var out []string
		for _, e := range list(resp.JSON["entry"]) {
			rs := obj(obj(e)["response"])
			loc := str(rs, "location")
			status := str(rs, "status")
			if loc != "" && (strings.HasPrefix(status, "201") || strings.HasPrefix(status, "200")) {
				out = append(out, relative(loc))
			}
		}
		return out
	}
	if loc := resp.Header.Get("Location"); strings.Contains(loc, "/_history/") {
		return []string{relative(loc)}
	}
	if id, v := str(resp.JSON, "id"), str(obj(resp.JSON["meta"]), "versionId"); id != "" && v != "" {
		return []string{str(resp.JSON, "resourceType") + "/" + id + "/_history/" + v}
	}
	return nil
}

// relative cuts a location down to "Type/id/_history/v".
func relative(loc string) string {
	if _, after, ok := strings.Cut(loc, "/fhir/"); ok {
		return after
	}
	return loc
}

// refOf is "Type/id" of a stored version.
func refOf(version string) string {
	r, _, _ := strings.Cut(version, "/_history/")
	return r
}

// expect records a delivery the step must end with: endpoint in state (delivered or
// withheld) for a resource type.
func (r *runner) expect(resourceType, endpoint, state string) {
	r.step.expect = append(r.step.expect, expectDel{resourceType, endpoint, state})
}

type expectDel struct{ resourceType, endpoint, state string }

// end waits for the deliveries of everything the step stored to end, records them and
// checks the step's expectations.
func (r *runner) end(ctx context.Context) {
	defer func() { r.step.ElapsedMS = time.Since(r.step.started).Milliseconds() }()
	if r.step.Skipped != "" || len(r.step.stored) == 0 {
		return
	}
	ds, err := r.settle(ctx, r.step.stored)
	if err != nil {
		r.problem("%v", err)
	}
	r.step.Deliveries = ds
	for _, d := range ds {
		switch d.State {
		case "delivered":
			if !d.Received {
				r.problem("the delivery log says %s was delivered to %s, but its receiver has no such request (%s)", version(d.Resource), d.Endpoint, d.ID)
			}
		case "withheld":
		default:
			r.problem("%s to %s did not arrive within %s: %s after %d attempt(s) %s", version(d.Resource), d.Endpoint, r.env.Wait, d.State, d.Attempts, d.LastError)
		}
	}
	for _, e := range r.step.expect {
		found := false
		for _, d := range ds {
			if strings.HasPrefix(d.Resource, e.resourceType+"/") && d.Endpoint == e.endpoint && d.State == e.state {
				found = true
			}
		}
		if !found {
			r.problem("expected a %s to be %s at %s; it was not", e.resourceType, e.state, e.endpoint)
		}
	}
}

// settle polls the delivery log until every delivery of the versions has ended (delivered
// and recorded by its receiver, withheld, or dead), or the wait runs out; then it answers
// with the last states it read.
func (r *runner) settle(ctx context.Context, versions []string) ([]Delivery, error) {
	want := map[string]int{}
	for i, v := range versions {
		want[v] = i + 1
	}
	deadline := time.Now().Add(r.env.Wait)
	var last []Delivery
	var lastErr error
	for {
		// Each read has its own bound, so the wait's end never cuts one short.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ds, err := r.deliveries(pctx, want)
		cancel()
		if err == nil {
			last, lastErr = ds, nil
			if ended(ds) {
				return ds, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			if last == nil && lastErr != nil {
				return nil, fmt.Errorf("reading the delivery log: %w", lastErr)
			}
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ended reports whether every delivery is over: delivered and recorded by its receiver,
// withheld, or dead.
func ended(ds []Delivery) bool {
	for _, d := range ds {
		if !(d.State == "delivered" && d.Received) && d.State != "withheld" && d.State != "dead" {
			return false
		}
	}
	return true
}

// want gives each version its place (from 1) in the order the step wrote them.
func (r *runner) deliveries(ctx context.Context, want map[string]int) ([]Delivery, error) {
	resp, err := r.c.do(ctx, r.step.Node, r.env.Operator, http.MethodGet, "/admin/deliveries?limit=1000", nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/deliveries: HTTP %d %s", resp.Status, shorten(string(resp.Raw), 200))
	}
	var out []Delivery
	for _, entry := range list(resp.JSON["deliveries"]) {
		e := obj(entry)
		// A delivery of a version the step did not write, made while the step ran, comes from
		// a change the broker made because of it (a referral closed with its Task).
		created, _ := time.Parse(time.RFC3339Nano, str(e, "createdAt"))
		consequence := want[str(e, "resource")] == 0
		if consequence && (created.IsZero() || created.Before(r.step.started)) {
			continue
		}
		d := Delivery{ID: str(e, "id"), Resource: str(e, "resource"), Route: str(e, "route"), Endpoint: str(e, "destination"),
			State: str(e, "state"), Reason: str(e, "reason"), LastError: str(e, "lastError"), Consequence: consequence}
		if n, ok := e["attempts"].(float64); ok {
			d.Attempts = int(n)
		}
		d.Agency = d.Endpoint
		if _, ag, ok := r.env.Config.Endpoint(d.Endpoint); ok {
			d.Agency = ag.Name
		}
		for _, rt := range r.env.Config.Routes {
			if rt.ID == d.Route {
				d.Purpose = rt.Purpose
			}
		}
		if s := r.env.Receivers[d.Endpoint]; s != nil {
			_, d.Received = s.Get(d.ID)
		}
		out = append(out, d)
	}
	// The log lists the most recently updated first; the timeline reads in the order the
	// versions were written, then in the order of the routes in the configuration.
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := idx[a], idx[b]
		if px, py := place(want, out[x].Resource), place(want, out[y].Resource); px != py {
			return px < py
		}
		return r.routeIndex(out[x].Route) < r.routeIndex(out[y].Route)
	})
	sorted := make([]Delivery, len(out))
	for i, j := range idx {
		sorted[i] = out[j]
	}
	return sorted, nil
}

// place is a version's position among the step's writes; the broker's own come last.
func place(want map[string]int, version string) int {
	if p, ok := want[version]; ok {
		return p
	}
	return len(want) + 1
}

func (r *runner) routeIndex(id string) int {
	for i, rt := range r.env.Config.Routes {
		if rt.ID == id {
			return i
		}
	}
	return len(r.env.Config.Routes)
}

// finish adds the summary and checks the receivers against the delivery log: every request
// a receiver recorded is a delivery the log calls delivered.
func (r *runner) finish() {
	sm := &r.tl.Summary
	sm.ReceivedBy = map[string]int{}
	logged := map[string]bool{}
	for _, s := range r.tl.Steps {
		sm.Steps++
		if s.Skipped != "" {
			sm.Skipped++
		}
		for _, a := range s.Actions {
			sm.Stored += len(a.Stored)
		}
		for _, d := range s.Deliveries {
			switch d.State {
			case "delivered":
				sm.Delivered++
				logged[d.ID] = true
			case "withheld":
				sm.Withheld++
			default:
				sm.Failed++
			}
		}
	}
	for id, s := range r.env.Receivers {
		name := id
		if _, ag, ok := r.env.Config.Endpoint(id); ok {
			name = ag.Name
		}
		got := s.Received()
		sm.ReceivedBy[name] += len(got)
		sm.Repeats += s.Repeats()
		for _, g := range got {
			if !logged[g.RequestID] {
				r.tl.Problems = append(r.tl.Problems, fmt.Sprintf("%s received %v (request %s), which no step's delivery accounts for", name, g.Refs(), g.RequestID))
			}
		}
	}
}
