package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
)

// A node configured with an OTLP endpoint exports a span for a FHIR request.
func TestTracingExportsSpans(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()

	node, err := app.New(context.Background(), app.Config{DataDir: t.TempDir(), OTLPEndpoint: collector.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node.Handler)
	resp, err := http.Get(srv.URL + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close()
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || len(got[0]) == 0 {
		t.Fatal("no spans reached the OTLP collector")
	}
}

// Without an endpoint no exporter is created and requests still work.
func TestTracingOffByDefault(t *testing.T) {
	node, err := app.New(context.Background(), app.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	rec := httptest.NewRecorder()
	node.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/metadata", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metadata: %d", rec.Code)
	}
}
