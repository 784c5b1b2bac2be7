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

// Next returns the statuses a referral Task in status may move to (besides staying, and
// entered-in-error).
func Next(status string) []string { return slices.Clone(next[status]) }

// IsReferralTask reports whether a Task is a referral's: its focus is a ServiceRequest.
func IsReferralTask(task map[string]any) bool {
	focus, _ := task["focus"].(map[string]any)
	ref, _ := focus["reference"].(string)
	return strings.HasPrefix(ref, "ServiceRequest/") || strings.Contains(ref, "/ServiceRequest/")
}

// CheckTask checks a write of a referral Task against the version it replaces (prev, nil
// for a create): the status change must be one the workflow allows (409 Conflict otherwise,
// naming Task.status), rejected and failed need a statusReason (422), and the referral it
// works on (focus), the person (for), the requester and the intent do not change (409).
// Tasks that are not a referral's pass. It fits engine.Config.Transitions["Task"].
func CheckTask(prev, task map[string]any) error {
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
