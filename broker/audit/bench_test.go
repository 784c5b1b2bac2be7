package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/store"
)

// BenchmarkAppendReads appends batches of read events, as the recorder does under a read
// load, to the embedded store: the audit cost of one read.
func BenchmarkAppendReads(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(ctx, "", b.TempDir(), store.Options{Migrations: audit.Migrations()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := audit.NewTrail(s)
	const batch = 500
	events := make([]audit.Event, batch)
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		for i := range events {
			pid := uuid.NewString() // stored resources have random ids
			events[i] = audit.Event{
				Time: time.Now(), Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Status: 200,
				ClientID: "operator", AgencyID: "operators", AgencyODS: "XHJB01", Purpose: "HSYSADMIN",
				Patients:  []string{"Patient/" + pid},
				Resources: []audit.Ref{{Type: "Patient", ID: pid}},
				RequestID: fmt.Sprintf("%08x-1111-4222-8333-%012x", n, i), Source: "127.0.0.1:51234",
			}
		}
		if err := tr.Append(ctx, events...); err != nil {
			b.Fatal(err)
		}
	}
}
