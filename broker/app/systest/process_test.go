// Package systest holds routing tests that run real broker processes (and a private Redis)
// and kill them. They take tens of seconds, so `go test -short` skips them; CI runs them.
package systest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
)

// bin is the hjbroker binary built once for the package's tests.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "hjbroker-systest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "hjbroker")
	build := exec.Command("go", "build", "-o", bin, "github.com/hjbroker/hjbroker/cmd/hjbroker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hjbroker:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts broker processes; skipped with -short")
	}
}

// setup is what broker processes of one test share: configuration, store and queue.
type setup struct {
	config  string
	dataDir string
	env     []string
}

// newSetup writes the routing configuration for the sinks and returns a setup on the
// embedded store in a temporary directory; env adds HJB_* variables (store URL, Redis).
func newSetup(t *testing.T, ld, court *deliverytest.Sink, env ...string) *setup {
	t.Helper()
	dir := t.TempDir()
	cfg, err := deliverytest.WriteConfig(dir, deliverytest.Endpoints{LD: ld.FHIRBase(), Court: court.FHIRBase(), Custody: court.FHIRBase()})
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"HJB_RETRY_BASE=100ms", "HJB_RETRY_MAX=500ms", "HJB_DELIVERY_LEASE=2s", "HJB_LOG_LEVEL=warn"}
	return &setup{config: cfg, dataDir: filepath.Join(dir, "data"), env: append(base, env...)}
}

func (s *setup) command(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	return cmd
}

// token mints a token for a client with `hjbroker token`.
func (s *setup) token(t *testing.T, client string) string {
	t.Helper()
	out, err := s.command("token", "--client", client, "--data-dir", s.dataDir, "--config", s.config).Output()
	if err != nil {
		t.Fatalf("hjbroker token: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// broker is a running `hjbroker serve` process.
type broker struct {
	cmd  *exec.Cmd
	base string
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

// start runs a broker on a free loopback port and waits until it serves.
func (s *setup) start(t *testing.T) *broker {
	t.Helper()
	cmd := s.command("serve", "--addr", "127.0.0.1:0", "--data-dir", s.dataDir, "--config", s.config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.log.WriteString(line + "\n")
			b.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "serving FHIR R4 at "); ok {
				u := strings.TrimPrefix(strings.Fields(rest)[0], "http://")
				addr <- strings.TrimSuffix(u, "/fhir")
			}
		}
		cmd.Wait() //nolint:errcheck // killed on purpose
	}()
	t.Cleanup(func() { b.stop(t) })
	select {
	case a := <-addr:
		b.base = a
	case <-b.done:
		t.Fatalf("broker exited before serving:\n%s", b.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not start:\n%s", b.logs())
	}
	return b
}

func (b *broker) logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// kill ends the process with SIGKILL: no shutdown, nothing flushed.
func (b *broker) kill() {
	b.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // may have exited
	<-b.done
}

// stop shuts the broker down with SIGTERM, killing it if it takes too long.
func (b *broker) stop(t *testing.T) {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Errorf("broker did not stop on SIGTERM")
		b.kill()
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

// do sends a request with a bearer token and returns the status and body.
func do(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// load writes n Observations per patient through the brokers in turn (each patient's in
// sequence) and returns what was acknowledged. pause spaces one patient's writes.
func load(t *testing.T, brokers []*broker, token string, patients []string, n int, pause time.Duration) map[string][]int {
	t.Helper()
	sent := map[string][]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for pi, p := range patients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				b := brokers[(pi+i)%len(brokers)]
				status, body := do(t, http.MethodPost, "http://"+b.base+"/fhir/Observation", token, deliverytest.Observation(p, i))
				if status != http.StatusCreated {
					t.Errorf("POST Observation via %s: %d %s", b.base, status, body)
					return
				}
				mu.Lock()
				sent[p] = append(sent[p], i)
				mu.Unlock()
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	wg.Wait()
	return sent
}

func total(sent map[string][]int) int {
	n := 0
	for _, s := range sent {
		n += len(s)
	}
	return n
}

func patients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Patient/p%d", i)
	}
	return out
}

func sinks(t *testing.T) (*deliverytest.Sink, *deliverytest.Sink) {
	ld, court := deliverytest.NewSink(), deliverytest.NewSink()
	t.Cleanup(func() {
		ld.Close()
		court.Close()
	})
	return ld, court
}

// variants are the store and queue combinations of the kill and replay tests.
func variants(t *testing.T) map[string]func(t *testing.T) []string {
	return map[string]func(t *testing.T) []string{
		"embedded": func(t *testing.T) []string { return nil },
		"postgres+redis": func(t *testing.T) []string {
			pg := postgres(t)
			u := deliverytest.RedisURL(t)
			return []string{"HJB_STORE_URL=" + pg, "HJB_REDIS_URL=" + u, "HJB_REDIS_PREFIX=" + deliverytest.RedisPrefix(t, u)}
		},
	}
}

func TestKilledBrokerLosesNothing(t *testing.T) {
	slow(t)
	for name, env := range variants(t) {
		t.Run(name, func(t *testing.T) {
			ld, court := sinks(t)
			ld.SetDelay(40 * time.Millisecond)
			s := newSetup(t, ld, court, env(t)...)
			tok := s.token(t, "custody")
			b := s.start(t)
			sent := load(t, []*broker{b}, tok, patients(4), 30, 0)
			if !ld.WaitDelivered(20, 20*time.Second) {
				t.Fatalf("deliveries did not start:\n%s", b.logs())
			}
			b.kill()
			before := len(ld.Delivered())
			if before >= total(sent) {
				t.Fatalf("all %d delivered before the kill; nothing was in flight", before)
			}
			b = s.start(t)
			if !ld.WaitDelivered(total(sent), 40*time.Second) {
				t.Fatalf("after restart: %s\n%s", ld.Check(sent), b.logs())
			}
			rep := ld.Check(sent)
			if !rep.OK() {
				t.Fatalf("after restart: %s", rep)
			}
			t.Logf("killed after %d of %d deliveries; %s", before, total(sent), rep)
		})
	}
}

// privateRedis runs a redis-server of its own on a random loopback port, persisting every
// write (appendfsync always) in a temporary directory.
type privateRedis struct {
	dir, port string
	cmd       *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("HJB_REQUIRE_SERVICES") == "1" {
			t.Fatal("redis-server is required but not installed")
		}
		t.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	r := &privateRedis{dir: t.TempDir(), port: port}
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *privateRedis) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

func (r *privateRedis) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	opts, _ := redis.ParseURL(r.url())
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("private redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *privateRedis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck
		r.cmd.Wait()                          //nolint:errcheck
	}
}

func TestRedisRestartDuringLoad(t *testing.T) {
	slow(t)
	rd := startPrivateRedis(t)
	ld, court := sinks(t)
	s := newSetup(t, ld, court, "HJB_REDIS_URL="+rd.url())
	tok := s.token(t, "custody")
	b := s.start(t)
	var sent map[string][]int
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		sent = load(t, []*broker{b}, tok, patients(4), 100, 15*time.Millisecond)
	}()
	if !ld.WaitDelivered(20, 10*time.Second) {
		t.Fatalf("deliveries did not start:\n%s", b.logs())
	}
	// SIGKILL: only what Redis had written to its append-only file survives.
	rd.kill()
	time.Sleep(700 * time.Millisecond)
	rd.start(t)
	select {
	case <-loaded:
		t.Fatal("the load finished before Redis came back; the test proves nothing")
	default:
	}
	<-loaded
	if t.Failed() {
		t.FailNow()
	}
	if !ld.WaitDelivered(total(sent), 40*time.Second) {
		t.Fatalf("after the Redis restart: %s\n%s", ld.Check(sent), b.logs())
	}
	rep := ld.Check(sent)
	if !rep.OK() {
		t.Fatalf("after the Redis restart: %s", rep)
	}
	// Redis calls block while it is down (the client redials), so the evidence is either the
	// client's dial errors or the relay's failure log.
	if l := b.logs(); !strings.Contains(l, "connection refused") && !strings.Contains(l, "relay failing") {
		t.Errorf("the broker did not notice Redis going away:\n%s", b.logs())
	}
	t.Logf("%d acknowledged writes; %s", total(sent), rep)
}

func TestTwoBrokersShareOnePostgresAndRedis(t *testing.T) {
	slow(t)
	pg := postgres(t)
	u := deliverytest.RedisURL(t)
	ld, court := sinks(t)
	s := newSetup(t, ld, court, "HJB_STORE_URL="+pg, "HJB_REDIS_URL="+u, "HJB_REDIS_PREFIX="+deliverytest.RedisPrefix(t, u))
	tok := s.token(t, "custody")
	b1, b2 := s.start(t), s.start(t)
	sent := load(t, []*broker{b1, b2}, tok, patients(6), 30, 0)
	if !ld.WaitDelivered(total(sent), 40*time.Second) {
		t.Fatalf("%s", ld.Check(sent))
	}
	time.Sleep(500 * time.Millisecond) // let any duplicate show up
	rep := ld.Check(sent)
	if !rep.OK() || rep.Delivered != total(sent) {
		t.Fatalf("%s", rep)
	}
	if rep.Duplicates != 0 {
		t.Errorf("%d duplicate deliveries without any failure", rep.Duplicates)
	}
	// Each node counts what it delivered: together exactly once each.
	op := s.token(t, "operator")
	n1, n2 := delivered(t, b1, op), delivered(t, b2, op)
	if n1+n2 != total(sent) {
		t.Errorf("nodes delivered %d + %d, want %d in all", n1, n2, total(sent))
	}
	t.Logf("%d writes through two nodes; node 1 delivered %d, node 2 %d; %s", total(sent), n1, n2, rep)
}

// delivered reads a node's hjbroker_deliveries_total for ld-fhir, outcome delivered.
func delivered(t *testing.T, b *broker, token string) int {
	t.Helper()
	status, body := do(t, http.MethodGet, "http://"+b.base+"/metrics", token, nil)
	if status != http.StatusOK {
		t.Fatalf("metrics: %d", status)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `hjbroker_deliveries_total{endpoint="ld-fhir",outcome="delivered"}`) {
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(n)
		}
	}
	return 0
}

func TestReplayCLIAndAdminAPI(t *testing.T) {
	slow(t)
	for name, env := range variants(t) {
		t.Run(name, func(t *testing.T) {
			ld, court := sinks(t)
			ld.SetDown(true, http.StatusBadRequest) // permanent: dead at the first attempt
			s := newSetup(t, ld, court, env(t)...)
			tok, op := s.token(t, "custody"), s.token(t, "operator")
			b := s.start(t)
			sent := load(t, []*broker{b}, tok, patients(2), 3, 0)
			dead := waitAdmin(t, b, op, "state=dead&destination=ld-fhir", 6)
			if !strings.Contains(dead[0]["lastError"].(string), "HTTP 400") {
				t.Fatalf("dead delivery %v", dead[0])
			}
			ld.SetDown(false, 0)
			// One delivery through the CLI, the rest of the endpoint's dead letters too.
			id := dead[0]["id"].(string)
			if out, err := s.command("replay", "--delivery", id, "--data-dir", s.dataDir).CombinedOutput(); err != nil {
				t.Fatalf("hjbroker replay --delivery: %v\n%s", err, out)
			}
			if !ld.WaitDelivered(1, 10*time.Second) {
				t.Fatalf("replayed delivery not received\n%s", b.logs())
			}
			if got := ld.Delivered()[0].RequestID; got != id {
				t.Errorf("replayed with X-Request-ID %s, want %s", got, id)
			}
			out, err := s.command("replay", "--endpoint", "ld-fhir", "--data-dir", s.dataDir).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "replayed 5 dead letter(s)") {
				t.Fatalf("hjbroker replay --endpoint: %v\n%s", err, out)
			}
			if !ld.WaitDelivered(6, 10*time.Second) {
				t.Fatalf("replayed deliveries not received: %s", ld.Check(sent))
			}
			waitAdmin(t, b, op, "state=delivered&destination=ld-fhir", 6)
			// The admin API replays too: kill the endpoint again, then replay it over HTTP.
			ld.SetDown(true, http.StatusBadRequest)
			more := load(t, []*broker{b}, tok, []string{"Patient/late"}, 1, 0)
			waitAdmin(t, b, op, "state=dead&patient=Patient/late", 1)
			ld.SetDown(false, 0)
			status, body := do(t, http.MethodPost, "http://"+b.base+"/admin/endpoints/ld-fhir/replay", op, nil)
			if status != http.StatusOK || !strings.Contains(string(body), `"replayed":1`) {
				t.Fatalf("admin replay: %d %s", status, body)
			}
			if !ld.WaitDelivered(7, 10*time.Second) {
				t.Fatalf("admin-replayed delivery not received: %s", ld.Check(more))
			}
		})
	}
}

// waitAdmin polls the admin API until it lists n deliveries for query.
func waitAdmin(t *testing.T, b *broker, token, query string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body := do(t, http.MethodGet, "http://"+b.base+"/admin/deliveries?limit=1000&"+query, token, nil)
		var r struct {
			Deliveries []map[string]any `json:"deliveries"`
		}
		if status == http.StatusOK && json.Unmarshal(body, &r) == nil && len(r.Deliveries) >= n {
			return r.Deliveries
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin %s: %d %s (want %d)\n%s", query, status, body, n, b.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postgres returns a fresh PostgreSQL database, skipping the test when there is none.
func postgres(t *testing.T) string {
	t.Helper()
	u, _ := storetest.Postgres(t)
	return u
}
