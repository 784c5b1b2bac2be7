package main

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
)

// simulatedSpine runs a Spine simulator until the test ends and returns the options that
// connect a broker to it, so that every shipped suite (spine-lookup too) runs on it.
func simulatedSpine(t *testing.T) app.SpineOptions {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := spinesim.Start("", spinesim.Options{SlowDelay: 10 * time.Second,
		Clients: []spinesim.Client{{ID: "hjbroker-cli-test", KeyID: "cli-1", Key: &key.PublicKey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return app.SpineOptions{URL: sim.URL, ClientID: "hjbroker-cli-test", KeyID: "cli-1", Key: key, Timeout: 2 * time.Second, Attempts: 2}
}
