// Package referral holds the workflow of a referral's Task: the states a Task that asks an
// agency to fulfil a ServiceRequest may move through, checked on every write against the
// version it replaces.
package referral

import (
	"net/http"
	"slices"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// next lists the statuses each status may move to. The shape follows the R4 Task state
// machine as a referral uses it: requested → received → accepted | rejected → in-progress →
// completed, with ready and on-hold on the way, cancelled by either side before the work
// ends, failed once started. Any status may be corrected to entered-in-error.
var next = map[string][]string{
	"draft":       {"requested", "cancelled"},
	"requested":   {"received", "accepted", "rejected", "cancelled"},
	"received":    {"accepted", "rejected", "cancelled"},
	"accepted":    {"ready", "in-progress", "cancelled"},
	"ready":       {"in-progress", "cancelled", "failed"},
	"in-progress": {"on-hold", "completed", "failed", "cancelled"},
	"on-hold":     {"in-progress", "failed", "cancelled"},
	// rejected, completed, cancelled, failed and entered-in-error are final.
}

// initial are the statuses a referral Task may be created in.
var initial = []string{"draft", "requested"}

// needsReason are the statuses that must say why (Task.statusReason).
var needsReason = []string{"rejected", "failed"}

// ownerMoves are the statuses only the Task's owner (the agency asked to do the work) may
// set; cancelled and entered-in-error may also come from the requester.
var ownerMoves = []string{"received", "accepted", "rejected", "ready", "in-progress", "on-hold", "completed", "failed"}

// Actor is the agency writing a Task, known by its ODS code. A nil *Actor is the broker
// itself or an operator, whom the role rules do not bind.
type Actor struct {
	ODS string
}

// IsReferralTask reports whether a Task is a referral's: its focus is a ServiceRequest.
func IsReferralTask(task map[string]any) bool {
	focus, _ := task["focus"].(map[string]any)
	ref, _ := focus["reference"].(string)
	return strings.HasPrefix(ref, "ServiceRequest/") || strings.Contains(ref, "/ServiceRequest/")
}

// CheckTask checks a write of a referral Task by actor against the version it replaces
// (prev, nil for a create): the status change must be one the workflow allows (409 Conflict
// otherwise, naming Task.status); only the owner moves the work on, and only the owner or
// the requester cancels it or marks it entered-in-error (403, when the Task names them by
// ODS code); rejected and failed need a statusReason (422); and the referral it works on
// (focus), the person (for), the requester and the intent do not change (409). Tasks that
// are not a referral's pass.
func CheckTask(actor *Actor, prev, task map[string]any) error {
	if task == nil || !(IsReferralTask(task) || (prev != nil && IsReferralTask(prev))) {
		return nil
	}
	now, _ := task["status"].(string)
	if prev == nil {
		if !slices.Contains(initial, now) {
			return outcome.At(http.StatusUnprocessableEntity, "business-rule", "Task.status",
				"a referral Task starts as requested (or draft), not %q", now)
		}
		return checkReason(task, now)
	}
	was, _ := prev["status"].(string)
	if now != was && now != "entered-in-error" && !slices.Contains(next[was], now) {
		allowed := "none: it is final"
		if n := next[was]; len(n) > 0 {
			allowed = strings.Join(n, ", ")
		}
		return outcome.At(http.StatusConflict, "business-rule", "Task.status",
			"a referral Task cannot move from %s to %s; from %s it may move to %s (or entered-in-error)", was, now, was, allowed)
	}
	if now != was {
		if err := checkActor(actor, prev, now); err != nil {
			return err
		}
	}
	for _, el := range []string{"focus", "for", "requester", "intent"} {
		if !same(prev[el], task[el]) {
			return outcome.At(http.StatusConflict, "business-rule", "Task."+el,
				"Task.%s of a referral Task is fixed when it is created; open a new referral instead", el)
		}
	}
	if now != was {
		return checkReason(task, now)
	}
	return nil
}

// checkActor applies the role rules to a status change of prev to status.
func checkActor(actor *Actor, prev map[string]any, status string) error {
	if actor == nil {
		return nil
	}
	owner, requester := odsOf(prev["owner"]), odsOf(prev["requester"])
	isOwner := owner != "" && strings.EqualFold(owner, actor.ODS)
	isRequester := requester != "" && strings.EqualFold(requester, actor.ODS)
	switch {
	case slices.Contains(ownerMoves, status):
		if owner != "" && !isOwner {
			return outcome.At(http.StatusForbidden, "forbidden", "Task.status",
				"only the Task's owner (%s) may move a referral Task to %s", owner, status)
		}
	case owner != "" || requester != "":
		if !isOwner && !isRequester {
			return outcome.At(http.StatusForbidden, "forbidden", "Task.status",
				"only the Task's owner or requester may move a referral Task to %s", status)
		}
	}
	return nil
}

// odsOf reads the ODS code a Reference carries as its identifier.
func odsOf(v any) string {
	r, _ := v.(map[string]any)
	id, _ := r["identifier"].(map[string]any)
	if sys, _ := id["system"].(string); sys != "https://fhir.nhs.uk/Id/ods-organization-code" {
		return ""
	}
	s, _ := id["value"].(string)
	return s
}

func checkReason(task map[string]any, status string) error {
	if !slices.Contains(needsReason, status) {
		return nil
	}
	if r, _ := task["statusReason"].(map[string]any); len(r) == 0 {
		return outcome.At(http.StatusUnprocessableEntity, "required", "Task.statusReason",
			"a referral Task that is %s must say why in statusReason", status)
	}
	return nil
}

// same compares two decoded JSON values; a reference is compared by its reference string
// when both have one (the broker adds nothing else to them).
func same(a, b any) bool {
	ma, oka := a.(map[string]any)
	mb, okb := b.(map[string]any)
	if oka && okb {
		ra, _ := ma["reference"].(string)
		rb, _ := mb["reference"].(string)
		if ra != "" || rb != "" {
			return ra == rb
		}
		if len(ma) != len(mb) {
			return false
		}
		for k, v := range ma {
			if !same(v, mb[k]) {
				return false
			}
		}
		return true
	}
	if oka || okb {
		return false
	}
	la, oka := a.([]any)
	lb, okb := b.([]any)
	if oka || okb {
		if !oka || !okb || len(la) != len(lb) {
			return false
		}
		for i := range la {
			if !same(la[i], lb[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
