package main

import (
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// simulatedSpine runs a Spine simulator until the test ends and returns the options that
// connect a broker to it, so that every shipped suite (spine-lookup too) runs on it.
func simulatedSpine(t *testing.T) app.SpineOptions {
	t.Helper()
	_, opts := apptest.StartSpine(t, spinesim.Options{SlowDelay: 10 * time.Second})
	opts.Timeout, opts.Attempts = 2*time.Second, 2
	return opts
}
