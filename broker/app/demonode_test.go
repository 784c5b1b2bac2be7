package app_test

import (
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// newDemoNode runs a node on backend b with the built-in demo configuration, the endpoints
// named in urls (endpoint id → URL) pointed there. Routing is not started yet, so that a
// test can write first; deliveries retry within a fraction of a second.
func newDemoNode(t *testing.T, b storetest.Backend, urls map[string]string) *apptest.Server {
	t.Helper()
	return apptest.Start(t, b, app.Config{ConfigFile: deliverytest.DemoConfig(t, urls),
		Routing: app.RoutingOptions{RetryBase: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond, Lease: 10 * time.Second}})
}
