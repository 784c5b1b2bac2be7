package referral

import "testing"

func TestCloses(t *testing.T) {
	tests := []struct {
		name       string
		prev, next map[string]any
		want       Closure
		ok         bool
	}{
		{"completed", task("in-progress"), task("completed"), Closure{"sr1", "completed", "completed"}, true},
		{"rejected", task("received"), task("rejected", "reason", "out of area"), Closure{"sr1", "revoked", "rejected"}, true},
		{"cancelled", task("accepted"), task("cancelled"), Closure{"sr1", "revoked", "cancelled"}, true},
		{"failed", task("in-progress"), task("failed", "reason", "no contact"), Closure{"sr1", "revoked", "failed"}, true},
		{"created cancelled", nil, task("cancelled"), Closure{"sr1", "revoked", "cancelled"}, true},
		{"versioned focus", task("in-progress"), task("completed", "focus", "ServiceRequest/sr2/_history/3"), Closure{"sr2", "completed", "completed"}, true},
		{"still working", task("accepted"), task("in-progress"), Closure{}, false},
		{"on hold", task("in-progress"), task("on-hold"), Closure{}, false},
		{"entered in error", task("in-progress"), task("entered-in-error"), Closure{}, false},
		{"note on a completed Task", task("completed"), task("completed"), Closure{}, false},
		{"deleted", task("in-progress"), nil, Closure{}, false},
		{"not a referral", task("in-progress"), task("completed", "focus", "Patient/p1"), Closure{}, false},
		{"another server's request", task("in-progress"), task("completed", "focus", "https://elsewhere.example/fhir/ServiceRequest/sr1"), Closure{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Closes(tt.prev, tt.next)
			if ok != tt.ok || got != tt.want {
				t.Errorf("Closes = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestClosureApply(t *testing.T) {
	c := Closure{ServiceRequest: "sr1", Status: "revoked", TaskStatus: "rejected"}
	for status, changes := range map[string]bool{
		"draft": true, "active": true, "on-hold": true,
		"completed": false, "revoked": false, "entered-in-error": false, "unknown": false,
	} {
		sr := map[string]any{"resourceType": "ServiceRequest", "status": status}
		if got := c.Apply(sr); got != changes {
			t.Errorf("Apply on %s = %v, want %v", status, got, changes)
		}
		want := status
		if changes {
			want = "revoked"
		}
		if sr["status"] != want {
			t.Errorf("a %s request is now %v, want %s", status, sr["status"], want)
		}
	}
}
