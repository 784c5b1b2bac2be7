package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// A token verified once is served from the cache, but still expires on time and stops
// working when its client leaves the configuration.
func TestVerifiedTokenCache(t *testing.T) {
	b := storetest.Backends(t)[0]
	clk := newClock()
	a := newAuth(t, openDB(t, b), clk, nil)
	tok, err := a.MintFor(context.Background(), "rsa-client")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		p, err := a.Verify(context.Background(), tok.AccessToken)
		if err != nil || p.ClientID != "rsa-client" {
			t.Fatalf("verify %d: %v %+v", i, err, p)
		}
		p.Purposes = nil // callers get copies: this must not leak into the cache
	}
	if p, _ := a.Verify(context.Background(), tok.AccessToken); len(p.Purposes) == 0 {
		t.Fatal("a caller's change reached the cached principal")
	}
	if len(a.verified) != 1 {
		t.Fatalf("cache holds %d tokens, want 1", len(a.verified))
	}
	clk.Add(time.Duration(tok.ExpiresIn)*time.Second + Leeway + time.Second)
	_, err = a.Verify(context.Background(), tok.AccessToken)
	var te *TokenError
	if !errors.As(err, &te) || te.Description != "the access token has expired" {
		t.Fatalf("expired cached token: %v", err)
	}
}
