package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

func TestTokenCommand(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Setenv("HJB_STORE_URL", b.StoreURL)
			t.Setenv("HJB_PUBLIC_BASE", "https://hjb.example/fhir")
			// The broker's store, as hjbroker serve leaves it.
			served, err := store.Open(t.Context(), b.StoreURL, b.DataDir, store.Options{Migrations: app.Migrations()})
			if err != nil {
				t.Fatal(err)
			}
			served.Close()
			var stdout, stderr bytes.Buffer
			cmd := newTokenCmd()
			cmd.SetOut(&stdout)
			cmd.SetErr(&stderr)
			cmd.SetArgs([]string{"--data-dir", b.DataDir, "--client", "court"})
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			tok := lines[len(lines)-1]

			// A server on the same store and public base accepts it.
			st, err := store.Open(t.Context(), b.StoreURL, b.DataDir, store.Options{Migrations: auth.Migrations()})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg, err := config.Demo()
			if err != nil {
				t.Fatal(err)
			}
			a, err := auth.New(auth.Options{Config: cfg, DB: st, PublicBase: "https://hjb.example/fhir"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Verify(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if p.ClientID != "court" || p.AgencyKind != config.KindCourt || !p.Scopes.Allows("Composition", 'r') || p.Scopes.Allows("Observation", 'r') {
				t.Errorf("principal %+v", p)
			}
			if !strings.Contains(stderr.String(), "client court") {
				t.Errorf("stderr %q", stderr.String())
			}
		})
	}
}

// A directory that holds no broker store yet gets one, with a note saying that only a broker
// serving from it will accept the token.
func TestTokenCommandNotesANewStore(t *testing.T) {
	t.Setenv("HJB_STORE_URL", "")
	dir := t.TempDir()
	for i, wantNote := range []bool{true, false} {
		cmd := newTokenCmd()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs([]string{"--data-dir", dir, "--client", "court"})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(errOut.String(), "held no broker store"); got != wantNote {
			t.Errorf("run %d: note %v, want %v: %s", i+1, got, wantNote, errOut.String())
		}
	}
}

func TestTokenCommandErrors(t *testing.T) {
	t.Setenv("HJB_STORE_URL", "")
	for _, args := range [][]string{
		{"--data-dir", t.TempDir()},
		{"--data-dir", t.TempDir(), "--client", "nobody"},
		{"--data-dir", t.TempDir(), "--client", "court", "--config", "/nonexistent.yaml"},
	} {
		cmd := newTokenCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
