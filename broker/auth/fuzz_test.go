package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// FuzzVerify feeds Verify arbitrary bearer strings. It must never panic, every failure must
// be a *TokenError, and anything accepted must carry the signed header and claims of a token
// the broker issued: no forged or altered claims pass.
func FuzzVerify(f *testing.F) {
	clk := newClock()
	a := newAuth(f, openDB(f, storetest.Backend{Name: "sqlite", DataDir: f.TempDir()}), clk, nil)
	signed := map[string]bool{}
	for _, c := range []string{"rsa-client", "ec-client"} {
		tok, err := a.MintFor(f.Context(), c)
		if err != nil {
			f.Fatal(err)
		}
		parts := strings.Split(tok.AccessToken, ".")
		signed[parts[0]+"."+parts[1]] = true
		f.Add(tok.AccessToken)
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
		f.Add(strings.Replace(tok.AccessToken, ".", "..", 1))
		f.Add(tok.AccessToken + "x")
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzMjU2LTAtNjAiLCJ0eXAiOiJhdCtqd3QifQ.e30.AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bearer string) {
		p, err := a.Verify(t.Context(), bearer)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		i := strings.LastIndexByte(bearer, '.')
		if i < 0 || !signed[bearer[:i]] {
			t.Fatalf("accepted a token the broker did not issue: %q", bearer)
		}
		if _, ok := a.Registry().Client(p.ClientID); !ok {
			t.Fatalf("principal for an unknown client %q", p.ClientID)
		}
	})
}
