package referral

import "strings"

// requestStatus maps the final statuses of a referral Task to the R4 request-status its
// ServiceRequest takes: the work was done (completed), or it will not be (revoked: the
// request is withdrawn; R4 has no separate "rejected" or "failed" request status).
var requestStatus = map[string]string{
	"completed": "completed",
	"rejected":  "revoked",
	"cancelled": "revoked",
	"failed":    "revoked",
}

// openRequest are the ServiceRequest statuses an ending Task closes; a request already
// completed, revoked, entered-in-error or unknown is left as it is.
var openRequest = []string{"draft", "active", "on-hold"}

// Closure is the change a referral Task's end makes to its ServiceRequest.
type Closure struct {
	// ServiceRequest is the id of the Task's focus; Status its new status.
	ServiceRequest, Status string
	// TaskStatus is the status the Task moved to.
	TaskStatus string
}

// Closes reports the ServiceRequest status change that a write of a referral Task from prev
// (nil for a create) to next (nil for a deletion) brings about: when the Task moves to
// completed its ServiceRequest becomes completed; rejected, cancelled or failed make it
// revoked. A Task already in that status, or not a referral's, changes nothing.
func Closes(prev, next map[string]any) (Closure, bool) {
	if next == nil || !IsReferralTask(next) {
		return Closure{}, false
	}
	now, _ := next["status"].(string)
	status, ok := requestStatus[now]
	if !ok {
		return Closure{}, false
	}
	if was, _ := prev["status"].(string); prev != nil && was == now {
		return Closure{}, false
	}
	focus, _ := next["focus"].(map[string]any)
	ref, _ := focus["reference"].(string)
	// Only a request on this broker (a relative reference, perhaps to a version) is closed.
	id, ok := strings.CutPrefix(ref, "ServiceRequest/")
	id, _, _ = strings.Cut(id, "/_history/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return Closure{}, false
	}
	return Closure{ServiceRequest: id, Status: status, TaskStatus: now}, true
}

// Apply sets the ServiceRequest's status when it is still open, and reports whether it did.
func (c Closure) Apply(sr map[string]any) bool {
	cur, _ := sr["status"].(string)
	for _, s := range openRequest {
		if cur == s {
			sr["status"] = c.Status
			return true
		}
	}
	return false
}
