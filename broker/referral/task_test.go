package referral

import (
	"errors"
	"net/http"
	"testing"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

func task(status string, extra ...string) map[string]any {
	t := map[string]any{
		"resourceType": "Task", "status": status, "intent": "order",
		"focus":     map[string]any{"reference": "ServiceRequest/sr1"},
		"for":       map[string]any{"reference": "Patient/p1"},
		"requester": map[string]any{"reference": "Organization/org-xld001"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		switch extra[i] {
		case "reason":
			t["statusReason"] = map[string]any{"text": extra[i+1]}
		case "focus":
			t["focus"] = map[string]any{"reference": extra[i+1]}
		case "for":
			t["for"] = map[string]any{"reference": extra[i+1]}
		}
	}
	return t
}

// statusOf returns the HTTP status and expression of a refusal (0 when allowed).
func statusOf(err error) (int, string) {
	if err == nil {
		return 0, ""
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return -1, err.Error()
	}
	return oe.Status, oe.Issues[0].Expression[0]
}

func TestEveryLegalTransition(t *testing.T) {
	legal := map[[2]string]bool{}
	for from, tos := range next {
		for _, to := range tos {
			legal[[2]string{from, to}] = true
		}
	}
	// Every pair the workflow names is allowed...
	n := 0
	for pair := range legal {
		next := task(pair[1], "reason", "why")
		if err := CheckTask(nil, task(pair[0]), next); err != nil {
			t.Errorf("%s → %s refused: %v", pair[0], pair[1], err)
		}
		n++
	}
	if n != 22 {
		t.Errorf("%d legal transitions, want 22", n)
	}
	// ...and the happy path of a probation referral in order.
	path := []string{"requested", "received", "accepted", "in-progress", "on-hold", "in-progress", "completed"}
	for i := 1; i < len(path); i++ {
		if err := CheckTask(nil, task(path[i-1]), task(path[i])); err != nil {
			t.Errorf("%s → %s: %v", path[i-1], path[i], err)
		}
	}
}

func TestIllegalTransitions(t *testing.T) {
	statuses := []string{"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
	legal := map[[2]string]bool{}
	for from, tos := range next {
		for _, to := range tos {
			legal[[2]string{from, to}] = true
		}
	}
	refused := 0
	for _, from := range statuses {
		for _, to := range statuses {
			if from == to || to == "entered-in-error" || legal[[2]string{from, to}] {
				continue
			}
			code, at := statusOf(CheckTask(nil, task(from), task(to, "reason", "why")))
			if code != http.StatusConflict || at != "Task.status" {
				t.Errorf("%s → %s: %d at %q, want 409 at Task.status", from, to, code, at)
			}
			refused++
		}
	}
	if refused != 99 {
		t.Errorf("%d illegal pairs checked, want 99", refused)
	}
}

func TestTaskRoles(t *testing.T) {
	owned := func(status string) map[string]any {
		m := task(status, "reason", "why")
		m["owner"] = map[string]any{"reference": "Organization/org-xprb01", "identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XPRB01"}}
		m["requester"] = map[string]any{"reference": "Organization/org-xld001", "identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XLD001"}}
		return m
	}
	probation, ld, court := &Actor{ODS: "XPRB01"}, &Actor{ODS: "XLD001"}, &Actor{ODS: "XCRT01"}
	cases := []struct {
		name     string
		actor    *Actor
		from, to string
		code     int
	}{
		{"owner receives", probation, "requested", "received", 0},
		{"owner completes", probation, "in-progress", "completed", 0},
		{"owner cancels", probation, "accepted", "cancelled", 0},
		{"requester cancels", ld, "requested", "cancelled", 0},
		{"requester corrects", ld, "completed", "entered-in-error", 0},
		{"requester may not accept", ld, "received", "accepted", http.StatusForbidden},
		{"requester may not complete", ld, "in-progress", "completed", http.StatusForbidden},
		{"stranger may not cancel", court, "requested", "cancelled", http.StatusForbidden},
		{"stranger may not receive", court, "requested", "received", http.StatusForbidden},
		{"the broker may", nil, "requested", "received", 0},
		{"an illegal move stays a conflict for the owner", probation, "requested", "completed", http.StatusConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, at := statusOf(CheckTask(tc.actor, owned(tc.from), owned(tc.to)))
			if code != tc.code || (code != 0 && at != "Task.status") {
				t.Errorf("%d at %q, want %d at Task.status", code, at, tc.code)
			}
		})
	}
}

func TestTaskRules(t *testing.T) {
	cases := []struct {
		name       string
		prev, next map[string]any
		code       int
		at         string
	}{
		{"created requested", nil, task("requested"), 0, ""},
		{"created draft", nil, task("draft"), 0, ""},
		{"created accepted", nil, task("accepted"), http.StatusUnprocessableEntity, "Task.status"},
		{"created completed", nil, task("completed"), http.StatusUnprocessableEntity, "Task.status"},
		{"rejected without reason", task("received"), task("rejected"), http.StatusUnprocessableEntity, "Task.statusReason"},
		{"rejected with reason", task("received"), task("rejected", "reason", "outside our area"), 0, ""},
		{"failed without reason", task("in-progress"), task("failed"), http.StatusUnprocessableEntity, "Task.statusReason"},
		{"same status, other change", task("accepted"), task("accepted"), 0, ""},
		{"entered-in-error from final", task("completed"), task("entered-in-error"), 0, ""},
		{"focus changed", task("requested"), task("received", "focus", "ServiceRequest/other"), http.StatusConflict, "Task.focus"},
		{"patient changed", task("requested"), task("requested", "for", "Patient/p2"), http.StatusConflict, "Task.for"},
		{"not a referral Task", nil, map[string]any{"resourceType": "Task", "status": "completed", "intent": "order"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, at := statusOf(CheckTask(nil, tc.prev, tc.next))
			if code != tc.code || at != tc.at {
				t.Errorf("%d at %q, want %d at %q", code, at, tc.code, tc.at)
			}
		})
	}
}
