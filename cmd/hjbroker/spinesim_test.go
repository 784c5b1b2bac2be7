package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/adapters/spine/spinesim"
)

// syncBuffer is a buffer written by the command and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runSim(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"spine-sim", "--addr", "127.0.0.1:0"}, args...))
	cmd.SetErr(out)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	re := regexp.MustCompile(`serving at (http://\S+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("spine-sim ended: %v; output %s", err, out.String())
		default:
		}
	}
	t.Fatalf("spine-sim did not start: %s", out.String())
	return ""
}

func TestSpineSimCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "spine.key")
	url := runSim(t, "--generate-key", keyFile, "--generate-client", "demo", "--generate-kid", "demo-1")
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := spine.ParsePrivateKeyPEM(raw)
	if err != nil {
		t.Fatal(err)
	}
	c, err := spine.New(spine.Config{BaseURL: url, ClientID: "demo", KeyID: "demo-1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.ReadPatient(context.Background(), spinesim.NormalPatient)
	if err != nil || p["id"] != spinesim.NormalPatient {
		t.Fatalf("reading through the command's simulator: %v, %v", p, err)
	}

	// A client registered by its public key file.
	pubFile := filepath.Join(dir, "demo.pub")
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	url = runSim(t, "--client", "other,other-1,"+pubFile)
	c, _ = spine.New(spine.Config{BaseURL: url, ClientID: "other", KeyID: "other-1", Key: key})
	if _, err := c.ReadPatient(context.Background(), spinesim.NormalPatient); err != nil {
		t.Fatalf("a --client key: %v", err)
	}
}

func TestSpineSimCommandNeedsAClient(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetArgs([]string{"spine-sim", "--addr", "127.0.0.1:0"})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil {
		t.Error("spine-sim without clients started")
	}
}
