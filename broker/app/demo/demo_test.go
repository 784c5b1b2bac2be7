package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
)

func TestWriteConfigPointsEndpointsAtReceivers(t *testing.T) {
	base, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	receivers, err := StartReceivers(base)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range receivers {
			s.Close()
		}
	}()
	for _, id := range []string{EndpointLD, EndpointCourt, EndpointProbation, EndpointGP} {
		if receivers[id] == nil {
			t.Errorf("no receiver for endpoint %s", id)
		}
	}
	path := filepath.Join(t.TempDir(), "agencies.json")
	if err := WriteConfig(path, base, receivers); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range receivers {
		ep, _, ok := got.Endpoint(id)
		if !ok || ep.URL != s.Base() {
			t.Errorf("endpoint %s: %+v, want url %s", id, ep, s.Base())
		}
		if orig, _, _ := base.Endpoint(id); orig.URL == s.Base() {
			t.Errorf("the built-in configuration was changed in place")
		}
	}
	if len(got.Routes) != len(base.Routes) || len(got.Sharing) != len(base.Sharing) || len(got.ConsentDefaults) != len(base.ConsentDefaults) {
		t.Errorf("routes, sharing rules or consent defaults lost in the rewrite")
	}
}

// A receiver that is down: the story does not hang and names what did not arrive.
func TestStoryReportsWhatDidNotArrive(t *testing.T) {
	ctx := context.Background()
	ip, err := startInProcess(ctx, Options{Wait: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ip.close()
	ip.env.Receivers[EndpointGP].Close()
	start := time.Now()
	tl, err := Story(ctx, ip.env)
	if err != nil {
		t.Fatal(err)
	}
	if tl.OK() {
		t.Fatal("the run reports no problems with the GP's receiver down")
	}
	var gp []string
	for _, p := range tl.Problems {
		if strings.Contains(p, "gp-fhir") {
			gp = append(gp, p)
		} else {
			t.Errorf("unexpected problem: %s", p)
		}
	}
	if len(gp) == 0 || !strings.Contains(gp[0], "did not arrive within 1.5s") || !strings.Contains(gp[0], "Release from custody") {
		t.Errorf("problems about the GP: %q", gp)
	}
	rel := tl.Stage(StageRelease)
	if len(rel) != 1 {
		t.Fatalf("release steps: %d", len(rel))
	}
	for _, d := range rel[0].Deliveries {
		if d.Endpoint == EndpointGP && (d.State == "delivered" || d.Received) {
			t.Errorf("delivery to a closed receiver recorded as %+v", d)
		}
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("the run took %s with one receiver down", el)
	}
	if t.Failed() {
		var out strings.Builder
		tl.WriteText(&out, true) //nolint:errcheck // a buffer
		t.Logf("timeline:\n%s", out.String())
	}
}

func TestTimelineGroupsDeliveriesThatWentTheSameWay(t *testing.T) {
	d := func(res, ep, state, reason string) Delivery {
		return Delivery{Resource: res, Endpoint: ep, Route: "r-" + ep, State: state, Reason: reason}
	}
	ds := []Delivery{
		d("Observation/a/_history/1", "ld", "delivered", ""),
		d("Observation/b/_history/1", "ld", "delivered", ""),
		d("Condition/c/_history/1", "ld", "delivered", ""),
		d("Flag/f/_history/1", "prob", "withheld", "no consent"),
		d("Flag/g/_history/1", "prob", "withheld", "sharing rule"),
		d("Encounter/e/_history/2", "ld", "delivered", ""),
	}
	cases := []struct {
		verbose bool
		want    []int
	}{
		{false, []int{3, 1, 1, 1}},
		{true, []int{1, 1, 1, 1, 1, 1}},
	}
	for _, c := range cases {
		var got []int
		for _, g := range groupDeliveries(ds, c.verbose) {
			got = append(got, len(g))
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("verbose %v: groups %v, want %v", c.verbose, got, c.want)
		}
	}
	if got := countTypes([]string{"Observation/a/_history/1", "Condition/c/_history/1", "Observation/b/_history/1"}); got != "2 Observation, 1 Condition" {
		t.Errorf("countTypes: %q", got)
	}
	var out strings.Builder
	tl := &Timeline{Steps: []*Step{{N: 1, Title: "t", Client: "c", Agency: "a", Deliveries: ds}}}
	if err := tl.WriteText(&out, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-> delivered  2 Observation, 1 Condition to  (ld)", "xx withheld   Flag/f v1 to  (prob)", "r-prob, purpose ; sharing rule"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out.String())
		}
	}
}

// When the first step fails, the steps that build on it are skipped as problems, not run on
// nothing; the run still ends and says why.
func TestStorySkipsWhatAFailedStepLeftUndone(t *testing.T) {
	ctx := context.Background()
	ip, err := startInProcess(ctx, Options{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ip.close()
	mint := ip.env.Token
	ip.env.Token = func(ctx context.Context, client string) (string, error) {
		if client == "custody-hcp" {
			return "", errors.New("the token service is down")
		}
		return mint(ctx, client)
	}
	tl, err := Story(ctx, ip.env)
	if err != nil {
		t.Fatal(err)
	}
	if tl.OK() || !strings.Contains(tl.Problems[0], "getting an access token for custody-hcp: the token service is down") {
		t.Fatalf("problems: %q", tl.Problems)
	}
	for _, s := range tl.Steps[1:] {
		if !strings.HasPrefix(s.Skipped, "cannot run: an earlier step did not record the ") {
			t.Errorf("step %d %q ran without its prerequisites: skipped %q, actions %v", s.N, s.Title, s.Skipped, s.Actions)
		}
	}
}
