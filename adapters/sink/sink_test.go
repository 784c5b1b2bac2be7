package sink

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, method, url, requestID, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck // 204 has no body
	return resp.StatusCode, out
}

func TestSinkRecordsDeliveries(t *testing.T) {
	s, err := Start("test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cases := []struct {
		name, method, path, id, body string
		status                       int
		kind, event                  string
		refs                         []string
	}{
		{"transaction put", "POST", "", "d1",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Encounter","id":"e1"},"request":{"method":"PUT","url":"Encounter/e1"}}]}`,
			200, KindTransaction, "", []string{"Encounter/e1"}},
		{"transaction delete", "POST", "", "d2",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Encounter/e1"}}]}`,
			200, KindTransaction, "", []string{"Encounter/e1"}},
		{"message", "POST", "/$process-message", "d3",
			`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","id":"m1","eventCoding":{"code":"create"}}},{"resource":{"resourceType":"ServiceRequest","id":"sr1"}}]}`,
			200, KindMessage, "create", []string{"ServiceRequest/sr1"}},
		{"rest-hook put", "PUT", "/Task/t1", "d4", `{"resourceType":"Task","id":"t1"}`, 200, KindPut, "", []string{"Task/t1"}},
		{"rest-hook delete", "DELETE", "/Task/t1", "d5", ``, 204, KindDelete, "", []string{"Task/t1"}},
		{"repeat of d1 is accepted, not recorded", "POST", "", "d1",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Encounter","id":"e1"},"request":{"method":"PUT","url":"Encounter/e1"}}]}`,
			200, "", "", nil},
		{"not JSON", "POST", "", "x1", `{`, 400, "", "", nil},
		{"wrong Bundle type", "POST", "", "x2", `{"resourceType":"Bundle","type":"batch","entry":[{}]}`, 400, "", "", nil},
		{"message without header", "POST", "/$process-message", "x3",
			`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Task","id":"t"}}]}`, 400, "", "", nil},
		{"entry without resource", "POST", "", "x4",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Task/t"}}]}`, 400, "", "", nil},
		{"unknown path", "GET", "/metadata", "x5", ``, 404, "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(t, c.method, s.Base()+c.path, c.id, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %v", status, c.status, body)
			}
			if status >= 400 && body["resourceType"] != "OperationOutcome" {
				t.Errorf("refusal without an OperationOutcome: %v", body)
			}
			got, ok := s.Get(c.id)
			if c.kind == "" {
				if ok && c.status >= 400 {
					t.Errorf("a refused request was recorded: %+v", got)
				}
				return
			}
			if !ok || got.Kind != c.kind || got.Event != c.event || strings.Join(got.Refs(), ",") != strings.Join(c.refs, ",") {
				t.Errorf("recorded %+v (found %v), want kind %s event %q refs %v", got, ok, c.kind, c.event, c.refs)
			}
		})
	}
	if n := len(s.Received()); n != 5 {
		t.Errorf("%d deliveries recorded, want 5", n)
	}
	if s.Repeats() != 1 || s.Rejected() != 5 {
		t.Errorf("repeats %d rejected %d, want 1 and 5", s.Repeats(), s.Rejected())
	}
}

func TestWaitEndsAtTheDeadline(t *testing.T) {
	s, err := Start("court")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = s.Wait(ctx, func(r []Received) bool { return len(r) > 0 })
	if err == nil || !strings.Contains(err.Error(), "court receiver has 0 deliveries") {
		t.Fatalf("Wait: %v", err)
	}
	go func() {
		req, _ := http.NewRequest(http.MethodPut, s.Base()+"/Task/t1", strings.NewReader(`{"resourceType":"Task","id":"t1"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := s.Wait(ctx2, func(r []Received) bool { return len(r) == 1 }); err != nil {
		t.Fatal(err)
	}
}
