package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
)

func TestServeAndShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	node, err := app.New(ctx, app.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- node.Serve(ctx, func(a string) { addrc <- a }) }()
	addr := <-addrc
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/fhir/metadata"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("HJB_MAX_BODY_BYTES", "2048")
	t.Setenv("HJB_MAX_ENTRIES", "7")
	t.Setenv("HJB_STORE_URL", "postgres://x@127.0.0.1/db")
	var c app.Config
	if err := c.FromEnv(); err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxBodyBytes != 2048 || c.Limits.MaxEntries != 7 || c.StoreURL != "postgres://x@127.0.0.1/db" {
		t.Fatalf("got %+v", c)
	}
	t.Setenv("HJB_MAX_DEPTH", "deep")
	var bad app.Config
	if err := bad.FromEnv(); err == nil {
		t.Fatal("want an error for HJB_MAX_DEPTH=deep")
	}
}

func TestBadStoreURL(t *testing.T) {
	if _, err := app.New(context.Background(), app.Config{DataDir: t.TempDir(), StoreURL: "mysql://nope"}); err == nil {
		t.Fatal("want an error for an unsupported store URL")
	}
}
