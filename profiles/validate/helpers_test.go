package validate

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/profiles/bindings"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/invariants"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/ukcore"
)

// The validator is immutable, so tests share one.
var shared = struct {
	once sync.Once
	v    *Validator
	err  error
}{}

func testValidator(t testing.TB) *Validator {
	t.Helper()
	shared.once.Do(func() {
		invs, err := invariants.R4()
		if err != nil {
			shared.err = err
			return
		}
		d, err := LoadFS(ukcore.FS())
		if err != nil {
			shared.err = err
			return
		}
		bs, err := bindings.R4()
		if err != nil {
			shared.err = err
			return
		}
		base, vsets := FromBindings(bs)
		shared.v, shared.err = New(Config{
			FHIRPath:     fhirpath.NewEngine(r4model.Load()),
			Invariants:   FromInvariants(invs),
			Bindings:     base,
			Profiles:     d.Profiles,
			ValueSets:    append(d.ValueSets, vsets...),
			Verification: d.Verification,
		})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.v
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("bad test JSON: %v\n%s", err, s)
	}
	return m
}

func dump(issues []outcome.Issue) string {
	var b strings.Builder
	for _, is := range issues {
		b.WriteString("  " + is.Severity + " " + is.Code + " " + strings.Join(is.Expression, ",") + " | " + is.Diagnostics + "\n")
	}
	return b.String()
}
