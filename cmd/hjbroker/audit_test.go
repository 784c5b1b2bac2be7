package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func runAudit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newAuditCmd()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return strings.TrimSpace(out.String()), err
}

func TestAuditVerifyCommand(t *testing.T) {
	t.Setenv("HJB_STORE_URL", "")
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s, err := store.Open(ctx, b.StoreURL, b.DataDir, store.Options{Migrations: audit.Migrations()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tr := audit.NewTrail(s)
			for i := range 5 {
				if err := tr.Append(ctx, audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeSuccess,
					ClientID: "court", AgencyID: "court", Patients: []string{fmt.Sprintf("Patient/p%d", i)}}); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"verify", "--data-dir", b.DataDir}
			if b.StoreURL != "" {
				args = append(args, "--store-url", b.StoreURL)
			}
			out, err := runAudit(t, args...)
			if err != nil || !strings.Contains(out, "audit trail OK: 5 events") {
				t.Fatalf("intact trail: %v\n%s", err, out)
			}
			if _, err := s.DB().ExecContext(ctx, s.Rebind(`DELETE FROM audit_events WHERE seq = ?`), 3); err != nil {
				t.Fatal(err)
			}
			out, err = runAudit(t, args...)
			var ee exitError
			if !errors.As(err, &ee) || ee.code != 1 {
				t.Fatalf("broken trail exited with %v", err)
			}
			if !strings.Contains(out, "BROKEN at seq 3: "+string(audit.BreakRowMissing)) {
				t.Fatalf("broken trail output:\n%s", out)
			}
		})
	}
}

func TestAuditVerifyNeedsAStore(t *testing.T) {
	t.Setenv("HJB_STORE_URL", "")
	if out, err := runAudit(t, "verify", "--data-dir", t.TempDir()); err == nil {
		t.Fatalf("an empty directory verified: %s", out)
	}
}
