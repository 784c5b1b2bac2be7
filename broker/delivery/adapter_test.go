package delivery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
)

func TestMessageBundleShape(t *testing.T) {
	h := newHarness(t, harnessOpts{typ: TypeFHIRMessage})
	var fail atomic.Bool
	fail.Store(true)
	h.rc.setStatus(func(received) (int, http.Header) {
		if fail.Swap(false) {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	d := h.add(t, "o1", "Patient/a", 1)
	h.drain(t, 0)
	rs := h.rc.received()
	if len(rs) != 2 {
		t.Fatalf("%d requests, want 2 (one retry)", len(rs))
	}
	r := rs[1]
	if r.Method != http.MethodPost || r.Path != "/$process-message" || r.ContentType != "application/fhir+json" {
		t.Errorf("%s %s (%s), want POST /$process-message as application/fhir+json", r.Method, r.Path, r.ContentType)
	}
	b := r.JSON
	if b["resourceType"] != "Bundle" || b["type"] != "message" || b["timestamp"] == nil {
		t.Fatalf("not a message Bundle: %v", b)
	}
	if rs[0].JSON["id"] != b["id"] {
		t.Errorf("the retry sent Bundle id %v, the first attempt %v", b["id"], rs[0].JSON["id"])
	}
	entries := list(b["entry"])
	if len(entries) != 2 {
		t.Fatalf("%d entries, want MessageHeader and the resource", len(entries))
	}
	mh := obj(obj(entries[0])["resource"])
	if mh["resourceType"] != "MessageHeader" {
		t.Fatalf("first entry is %v, want MessageHeader", mh["resourceType"])
	}
	if ec := obj(mh["eventCoding"]); ec["system"] != SystemDeliveryEvent || ec["code"] != "update" {
		t.Errorf("eventCoding %v", ec)
	}
	if src := obj(mh["source"]); src["endpoint"] != "https://broker.example/fhir" {
		t.Errorf("source %v", src)
	}
	dest := obj(list(mh["destination"])[0])
	if dest["endpoint"] != h.rc.srv.URL {
		t.Errorf("destination endpoint %v, want %s", dest["endpoint"], h.rc.srv.URL)
	}
	if id := obj(obj(dest["receiver"])["identifier"]); id["value"] != "CRT01" {
		t.Errorf("receiver %v, want the court's ODS code", dest["receiver"])
	}
	if reason := obj(list(obj(mh["reason"])["coding"])[0]); reason["system"] != SystemMessageReasonBaRS || reason["code"] != "update" {
		t.Errorf("reason %v", reason)
	}
	focus := obj(list(mh["focus"])[0])["reference"]
	res := obj(entries[1])
	if focus != res["fullUrl"] || !strings.HasPrefix(res["fullUrl"].(string), "urn:uuid:") {
		t.Errorf("focus %v does not point at the resource entry %v", focus, res["fullUrl"])
	}
	if obj(res["resource"])["id"] != "o1" {
		t.Errorf("resource entry %v", res)
	}
	if mh["id"] != b["id"] || r.RequestID != d.ID {
		t.Errorf("MessageHeader id %v, Bundle id %v, X-Request-ID %s (delivery %s)", mh["id"], b["id"], r.RequestID, d.ID)
	}
}

// The fhir-rest adapter gets a token by client credentials with a signed assertion, and
// sends a transaction that PUTs the resource.
func TestFHIRRestWithClientCredentials(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	var tokenURL string
	var issued atomic.Int32
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm() //nolint:errcheck
		if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		var claims jwt.RegisteredClaims
		tok, err := jwt.ParseWithClaims(r.Form.Get("client_assertion"), &claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(tokenURL), jwt.WithIssuer("court-push"), jwt.WithExpirationRequired())
		if err != nil || claims.Subject != "court-push" || claims.ID == "" || tok.Header["kid"] != "k1" || r.Form.Get("scope") != "system/Observation.c" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if claims.ExpiresAt.Sub(time.Now()) > 5*time.Minute {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		issued.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-1", "token_type": "Bearer", "expires_in": 300}) //nolint:errcheck
	}))
	defer tokenSrv.Close()
	tokenURL = tokenSrv.URL + "/oauth2/token"
	h := newHarness(t, harnessOpts{extra: []string{"client: court-push", "tokenUrl: " + tokenURL, "keyFile: " + keyFile, "keyId: k1", "scope: system/Observation.c"}})
	h.rc.setStatus(func(r received) (int, http.Header) {
		if r.Auth != "Bearer tok-1" {
			return http.StatusUnauthorized, nil
		}
		return http.StatusOK, nil
	})
	h.add(t, "o1", "Patient/a", 1)
	h.add(t, "o2", "Patient/b", 1)
	h.drain(t, 0)
	rs := h.rc.received()
	if len(rs) != 2 {
		t.Fatalf("%d requests, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Status != http.StatusOK {
			t.Errorf("request refused with %d (Authorization %q)", r.Status, r.Auth)
		}
		if r.Method != http.MethodPost || r.Path != "/" && r.Path != "" {
			t.Errorf("%s %s, want POST to the base", r.Method, r.Path)
		}
		if r.JSON["type"] != "transaction" {
			t.Errorf("Bundle type %v", r.JSON["type"])
		}
		e := obj(list(r.JSON["entry"])[0])
		id := obj(e["resource"])["id"].(string)
		if req := obj(e["request"]); req["method"] != "PUT" || req["url"] != "Observation/"+id {
			t.Errorf("request %v, want PUT Observation/%s", req, id)
		}
	}
	if n := issued.Load(); n != 1 {
		t.Errorf("%d tokens issued, want 1 (cached)", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-3":                            0,
		"Wed, 01 Jan 2025 09:01:00 GMT": time.Minute,
		"Wed, 01 Jan 2025 08:00:00 GMT": 0,
		"soon":                          0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRestHookPayloadModes(t *testing.T) {
	rc := newReceiver(t)
	ad := NewRestHook(HookOptions{BaseURL: "https://broker.example/fhir"})
	d := routing.Delivery{ID: "d1", Event: "update", ResourceType: "Observation", ResourceID: "o1", Version: 3}
	res := observation("o1", "Patient/a", 1)
	tests := []struct {
		mode, mime          string
		deleted             bool
		method, path, ctype string
		check               func(t *testing.T, r received)
	}{
		{mode: PayloadEmpty, method: "POST", path: "/hook", check: func(t *testing.T, r received) {
			if len(r.Body) != 0 {
				t.Errorf("empty notification has a body: %s", r.Body)
			}
		}},
		{mode: PayloadIDOnly, mime: "application/fhir+json", method: "POST", path: "/hook", ctype: "application/fhir+json", check: func(t *testing.T, r received) {
			if r.JSON["type"] != "history" {
				t.Errorf("id-only Bundle type %v, want history", r.JSON["type"])
			}
			e := obj(list(r.JSON["entry"])[0])
			if e["fullUrl"] != "https://broker.example/fhir/Observation/o1" || e["resource"] != nil {
				t.Errorf("id-only entry %v, want the fullUrl and no resource", e)
			}
			if obj(e["response"])["etag"] != `W/"3"` || obj(e["request"])["method"] != "PUT" {
				t.Errorf("id-only entry %v, want request PUT and etag W/\"3\"", e)
			}
		}},
		{mode: PayloadFull, mime: "application/fhir+json", method: "PUT", path: "/hook/Observation/o1", ctype: "application/fhir+json", check: func(t *testing.T, r received) {
			if r.JSON["resourceType"] != "Observation" || r.JSON["id"] != "o1" {
				t.Errorf("full-resource body %v", r.JSON)
			}
		}},
		{mode: PayloadFull, mime: "application/fhir+json", deleted: true, method: "DELETE", path: "/hook/Observation/o1"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.method, func(t *testing.T) {
			before := len(rc.received())
			p := Payload{Delivery: d, Resource: res, Deleted: tt.deleted, RequestID: "d1", PayloadMode: tt.mode, MimeType: tt.mime,
				Header: http.Header{"Authorization": {"Bearer channel-secret"}}}
			if tt.deleted {
				p.Resource = nil
			}
			if _, err := ad.Send(context.Background(), config.Endpoint{ID: "Subscription/s1", Type: TypeRestHook, URL: rc.srv.URL + "/hook"}, p); err != nil {
				t.Fatal(err)
			}
			rs := rc.received()
			if len(rs) != before+1 {
				t.Fatalf("%d requests, want 1", len(rs)-before)
			}
			r := rs[len(rs)-1]
			if r.Method != tt.method || r.Path != tt.path || r.ContentType != tt.ctype {
				t.Errorf("%s %s (%q), want %s %s (%q)", r.Method, r.Path, r.ContentType, tt.method, tt.path, tt.ctype)
			}
			if r.Auth != "Bearer channel-secret" || r.RequestID != "d1" {
				t.Errorf("channel header %q / X-Request-ID %q missing", r.Auth, r.RequestID)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
	_, err := ad.Send(context.Background(), config.Endpoint{URL: rc.srv.URL}, Payload{Delivery: d, Resource: res, PayloadMode: PayloadFull, MimeType: "application/fhir+xml"})
	if !IsPermanent(err) {
		t.Errorf("an XML payload: err = %v, want a permanent error", err)
	}
}

func subscription(id, status, criteria, payload string, ext string) map[string]any {
	ch := map[string]any{"type": "rest-hook", "endpoint": "https://hooks.example/notify", "header": []any{"Authorization: Bearer s3cret", "X-Extra: 1"}}
	if payload != "" {
		ch["payload"] = payload
	}
	if ext != "" {
		ch["_payload"] = map[string]any{"extension": []any{map[string]any{"url": ExtPayloadContent, "valueCode": ext}}}
	}
	return map[string]any{"resourceType": "Subscription", "id": id, "status": status, "criteria": criteria, "reason": "test",
		"channel": ch, "meta": map[string]any{"source": "https://broker.example/agency/court"}}
}

func TestSubscriptionsDeliveries(t *testing.T) {
	subs := []map[string]any{
		subscription("all-obs", "active", "Observation", "application/fhir+json", ""),
		subscription("final-obs", "requested", "Observation?status=final", "", ""),
		subscription("prelim-obs", "active", "Observation?status=preliminary", "", ""),
		subscription("off", "off", "Observation", "", ""),
		subscription("patients", "active", "Patient", "", ""),
	}
	var lists atomic.Int32
	s := NewSubscriptions(SubscriptionOptions{
		List: func(context.Context) ([]map[string]any, error) { lists.Add(1); return subs, nil },
		Match: MatchFunc(func(_ context.Context, typ string, params url.Values, res map[string]any) (bool, error) {
			return typ == "Observation" && res["status"] == params.Get("status"), nil
		}),
		Config: testConfig(t, endpointYAML("e", TypeFHIRRest, "http://x.invalid")),
	})
	ev := routing.Event{Kind: routing.Update, ResourceType: "Observation", ID: "o1", Version: 2, Resource: observation("o1", "Patient/a", 1), Patient: "Patient/a"}
	ds, err := s.Deliveries(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]routing.Delivery{}
	for _, d := range ds {
		got[d.Destination] = d
	}
	if len(got) != 2 || got["Subscription/all-obs"].ID == "" || got["Subscription/final-obs"].ID == "" {
		t.Fatalf("deliveries to %v, want all-obs and final-obs", keys(got))
	}
	d := got["Subscription/final-obs"]
	if d.Agency != "court" || d.Purpose != "TREAT" || d.Version != 2 || d.Patient != "Patient/a" || d.Event != "update" {
		t.Errorf("delivery %+v", d)
	}
	// A deletion matches criteria without parameters only.
	ds, _ = s.Deliveries(context.Background(), routing.Event{Kind: routing.Delete, ResourceType: "Observation", ID: "o1", Version: 3})
	if len(ds) != 1 || ds[0].Destination != "Subscription/all-obs" {
		t.Errorf("deletion deliveries %+v, want all-obs only", ds)
	}
	// The list is cached until a Subscription changes.
	if n := lists.Load(); n != 1 {
		t.Errorf("listed %d times, want 1", n)
	}
	s.Deliveries(context.Background(), routing.Event{Kind: routing.Update, ResourceType: "Subscription", ID: "x"}) //nolint:errcheck
	s.Deliveries(context.Background(), ev)                                                                         //nolint:errcheck
	if n := lists.Load(); n != 2 {
		t.Errorf("listed %d times after a Subscription changed, want 2", n)
	}

	tgt, err := s.Target(context.Background(), "Subscription/all-obs")
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Endpoint.URL != "https://hooks.example/notify" || tgt.PayloadMode != PayloadFull || tgt.Header.Get("Authorization") != "Bearer s3cret" || tgt.Header.Get("X-Extra") != "1" || tgt.AgencyID != "court" {
		t.Errorf("target %+v", tgt)
	}
	if tgt, _ := s.Target(context.Background(), "Subscription/final-obs"); tgt.PayloadMode != PayloadEmpty {
		t.Errorf("no payload: mode %q, want empty", tgt.PayloadMode)
	}
	subs = append(subs, subscription("ids", "active", "Observation", "application/fhir+json", PayloadIDOnly))
	if tgt, err := s.Target(context.Background(), "Subscription/ids"); err != nil || tgt.PayloadMode != PayloadIDOnly {
		t.Errorf("backport id-only: mode %q (%v), want id-only", tgt.PayloadMode, err)
	}
	if _, err := s.Target(context.Background(), "Subscription/off"); !IsPermanent(err) {
		t.Errorf("an off Subscription: err = %v, want permanent", err)
	}
}

// A Subscription becomes active on its first successful notification and error, with the
// reason, after consecutive failures; it is notified through the worker like any endpoint.
func TestSubscriptionStatusThroughWorker(t *testing.T) {
	h := newHarness(t, harnessOpts{extra: []string{"maxAttempts: 2"}})
	sub := subscription("s1", "requested", "Observation", "application/fhir+json", "")
	obj(sub["channel"])["endpoint"] = h.rc.srv.URL + "/hook"
	type change struct{ status, text string }
	var changes []change
	subs := NewSubscriptions(SubscriptionOptions{
		List: func(context.Context) ([]map[string]any, error) { return []map[string]any{sub}, nil },
		SetStatus: func(_ context.Context, id, status, text string) error {
			changes = append(changes, change{status, text})
			return nil
		},
		Config:           h.cfg,
		Purpose:          "HLEGAL",
		FailureThreshold: 3,
	})
	h.w.o.Subscriptions = subs
	h.st.setConsents("Patient/a", consent("Patient/a", "active"))
	h.st.put(observation("o1", "Patient/a", 1), 1)
	send := func() {
		ds, err := subs.Deliveries(context.Background(), routing.Event{Kind: routing.Update, ResourceType: "Observation", ID: "o1", Version: 1, Resource: observation("o1", "Patient/a", 1), Patient: "Patient/a"})
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries %v, %v", ds, err)
		}
		b, _ := json.Marshal(ds[0])
		h.q.Enqueue(context.Background(), queueMessage(ds[0], b)) //nolint:errcheck
		for range 100 {
			h.w.ProcessOnce(context.Background(), ds[0].Destination) //nolint:errcheck
			if st, _ := h.q.Stats(context.Background(), ds[0].Destination); st.Depth == 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("the notification was not finished")
	}
	send()
	rs := h.rc.received()
	if len(rs) != 1 || rs[0].Method != http.MethodPut || rs[0].Path != "/hook/Observation/o1" || rs[0].Header.Get("Authorization") != "Bearer s3cret" {
		t.Fatalf("notifications %+v", rs)
	}
	h.rc.setStatus(func(received) (int, http.Header) { return http.StatusInternalServerError, nil })
	send() // 2 failed attempts, then dead
	send() // 1 more: the third consecutive failure
	if len(changes) != 2 || changes[0].status != "active" || changes[1].status != "error" || !strings.Contains(changes[1].text, "HTTP 500") {
		t.Fatalf("status changes %+v, want active then error with the reason", changes)
	}
	h.rc.setStatus(func(received) (int, http.Header) { return http.StatusOK, nil })
	send()
	if len(changes) != 3 || changes[2].status != "active" {
		t.Errorf("status changes %+v, want active again after a success", changes)
	}
}
