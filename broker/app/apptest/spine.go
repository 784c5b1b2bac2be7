package apptest

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
)

// StartSpine runs a Spine simulator with its test patients until the test ends, with the
// broker registered as its client under a fresh key, and returns it with the options that
// connect a node to it. Callers add timeouts and attempts to the options as they need.
func StartSpine(t testing.TB, opts spinesim.Options) (*spinesim.Running, app.SpineOptions) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const client, kid = "hjbroker-test", "hjbroker-test-1"
	opts.Clients = append(opts.Clients, spinesim.Client{ID: client, KeyID: kid, Key: &key.PublicKey})
	sim, err := spinesim.Start("", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim, app.SpineOptions{URL: sim.URL, ClientID: client, KeyID: kid, Key: key}
}
