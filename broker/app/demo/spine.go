package demo

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/config"
)

// Spine is a Spine simulator the broker is connected to: the PDS and the Summary Care
// Record of the simulator's test patients (docs/spine.md).
type Spine struct {
	*spinesim.Running
	// Options are what a node needs to use it (app.Config.Spine).
	Options app.SpineOptions
	// Key is the broker's private key, registered with the simulator.
	Key *rsa.PrivateKey
}

// StartSpine starts a Spine simulator on a loopback port with a new key pair registered for
// the broker.
func StartSpine() (*Spine, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the broker's Spine key: %w", err)
	}
	const client, kid = "hjbroker-demo", "hjbroker-demo-1"
	sim, err := spinesim.Start("", spinesim.Options{Clients: []spinesim.Client{{ID: client, KeyID: kid, Key: &key.PublicKey}}})
	if err != nil {
		return nil, fmt.Errorf("starting the Spine simulator: %w", err)
	}
	return &Spine{Running: sim, Key: key, Options: app.SpineOptions{URL: sim.URL, ClientID: client, KeyID: kid, Key: key}}, nil
}

// AlignGP gives the configuration's GP agency the ODS code of the practice the simulator's
// patients are registered with, so that the hand-back of a person the PDS describes goes to
// the demo GP. The configuration is changed in place; it is the demo's own copy.
func AlignGP(cfg *config.Config) {
	for i := range cfg.Agencies {
		if cfg.Agencies[i].Kind == config.KindGP {
			cfg.Agencies[i].ODS = spinesim.NormalGP
			return
		}
	}
}
