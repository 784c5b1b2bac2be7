package app_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/store"
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
	t.Setenv("HJB_MAX_SAVED_RESULTS", "900")
	t.Setenv("HJB_STORE_URL", "postgres://x@127.0.0.1/db")
	var c app.Config
	if err := c.FromEnv(); err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxBodyBytes != 2048 || c.Limits.MaxEntries != 7 || c.Limits.MaxSavedResults != 900 || c.StoreURL != "postgres://x@127.0.0.1/db" {
		t.Fatalf("got %+v", c)
	}
	t.Setenv("HJB_MAX_DEPTH", "deep")
	var bad app.Config
	if err := bad.FromEnv(); err == nil {
		t.Fatal("want an error for HJB_MAX_DEPTH=deep")
	}
}

// The embedded store's read cache: on by default with its metrics, off with
// HJB_READ_CACHE_MB=0, and a second broker on the same data directory is refused.
func TestReadCacheConfiguration(t *testing.T) {
	for v, want := range map[string]int{"0": -1, "16": 16} {
		t.Setenv("HJB_READ_CACHE_MB", v)
		var c app.Config
		if err := c.FromEnv(); err != nil || c.ReadCacheMB != want {
			t.Errorf("HJB_READ_CACHE_MB=%s: ReadCacheMB %d, %v; want %d", v, c.ReadCacheMB, err, want)
		}
	}
	t.Setenv("HJB_READ_CACHE_MB", "lots")
	var bad app.Config
	if err := bad.FromEnv(); err == nil || !strings.Contains(err.Error(), "HJB_READ_CACHE_MB") {
		t.Errorf("HJB_READ_CACHE_MB=lots: %v", err)
	}

	dir := t.TempDir()
	ctx := context.Background()
	n, err := app.New(ctx, app.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if st := n.Store.ReadCacheStats(); !st.Enabled || st.MaxBytes != 64<<20 {
		t.Errorf("default cache: %+v", st)
	}
	if _, err := app.New(ctx, app.Config{DataDir: dir}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("second broker on the same data directory: %v, want store.ErrLocked", err)
	}
	off, err := app.New(ctx, app.Config{DataDir: t.TempDir(), ReadCacheMB: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if off.Store.ReadCacheStats().Enabled {
		t.Error("ReadCacheMB -1 still has a cache")
	}
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
	}
	for _, name := range []string{"hjbroker_read_cache_hits_total", "hjbroker_read_cache_misses_total", "hjbroker_read_cache_bytes"} {
		if !found[name] {
			t.Errorf("metric %s missing", name)
		}
	}
}

func TestBadStoreURL(t *testing.T) {
	if _, err := app.New(context.Background(), app.Config{DataDir: t.TempDir(), StoreURL: "mysql://nope"}); err == nil {
		t.Fatal("want an error for an unsupported store URL")
	}
}
