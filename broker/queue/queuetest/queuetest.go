// Package queuetest is the contract every queue.Queue backend passes: each backend's tests
// call Run (and RunReopen) with a function that opens a fresh, empty queue.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/queue"
)

// Open returns a fresh, empty queue; the backend closes it and removes its data at cleanup.
type Open func(t testing.TB) queue.Queue

// Run runs the contract suite; every subtest opens its own queue.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, q queue.Queue)
	}{
		{"EnqueueClaimAck", testEnqueueClaimAck},
		{"ClaimLimit", testClaimLimit},
		{"LeaseExpiryRedelivers", testLeaseExpiry},
		{"RetryNotBefore", testRetryNotBefore},
		{"UnknownMessages", testUnknown},
		{"OrderPerKey", testOrderPerKey},
		{"OrderPerKeyConcurrent", testOrderPerKeyConcurrent},
		{"ExclusiveClaims", testExclusiveClaims},
		{"DeadLetterAndReplay", testDeadLetterAndReplay},
		{"Stats", testStats},
		{"Destinations", testDestinations},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

const dest = "endpoint-a"

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func enqueue(t testing.TB, q queue.Queue, msgs ...queue.Message) []string {
	t.Helper()
	ids, err := q.Enqueue(ctx(t), msgs...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if len(ids) != len(msgs) {
		t.Fatalf("Enqueue returned %d ids for %d messages", len(ids), len(msgs))
	}
	return ids
}

func claim(t testing.TB, q queue.Queue, consumer string, n int, lease time.Duration) []queue.Message {
	t.Helper()
	ms, err := q.Claim(ctx(t), dest, consumer, n, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return ms
}

func ack(t testing.TB, q queue.Queue, id string) {
	t.Helper()
	if err := q.Ack(ctx(t), dest, id); err != nil {
		t.Fatalf("Ack %s: %v", id, err)
	}
}

func msg(key, body string) queue.Message {
	return queue.Message{Destination: dest, Key: key, IdempotencyKey: "idem-" + body, Body: []byte(body)}
}

func bodies(ms []queue.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

// sortedBodies is for claims whose order across keys is not part of the contract.
func sortedBodies(ms []queue.Message) []string {
	b := bodies(ms)
	slices.Sort(b)
	return b
}

func byBody(ms []queue.Message, body string) queue.Message {
	for _, m := range ms {
		if string(m.Body) == body {
			return m
		}
	}
	return queue.Message{}
}

func testEnqueueClaimAck(t *testing.T, q queue.Queue) {
	before := time.Now().Add(-time.Millisecond)
	ids := enqueue(t, q, msg("Patient/1", "a"), msg("", "b"),
		queue.Message{Destination: dest, Body: []byte{0, 1, 2, 255}})
	after := time.Now().Add(time.Millisecond)
	if ids[0] == "" || ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Fatalf("ids not distinct: %q", ids)
	}
	got := claim(t, q, "c1", 10, time.Minute)
	if len(got) != 3 {
		t.Fatalf("claimed %d, want 3", len(got))
	}
	for _, m := range got {
		i := slices.Index(ids, m.ID)
		if i < 0 {
			t.Fatalf("claimed unknown id %q", m.ID)
		}
		if m.Destination != dest || m.Attempt != 0 || m.LastError != "" {
			t.Errorf("message %d: destination %q attempt %d lastError %q", i, m.Destination, m.Attempt, m.LastError)
		}
		if m.EnqueuedAt.Before(before) || m.EnqueuedAt.After(after) {
			t.Errorf("message %d: EnqueuedAt %v not within [%v, %v]", i, m.EnqueuedAt, before, after)
		}
		want := []queue.Message{msg("Patient/1", "a"), msg("", "b"), {Key: "", Body: []byte{0, 1, 2, 255}}}[i]
		if m.Key != want.Key || string(m.Body) != string(want.Body) {
			t.Errorf("message %d: key %q body %q, want %q %q", i, m.Key, m.Body, want.Key, want.Body)
		}
		switch {
		case i < 2 && m.IdempotencyKey != want.IdempotencyKey:
			t.Errorf("message %d: idempotency key %q, want %q", i, m.IdempotencyKey, want.IdempotencyKey)
		case i == 2 && m.IdempotencyKey == "":
			t.Errorf("message without an idempotency key was given none")
		}
	}
	if more := claim(t, q, "c2", 10, time.Minute); len(more) != 0 {
		t.Fatalf("claimed leased messages again: %v", bodies(more))
	}
	for _, id := range ids {
		ack(t, q, id)
	}
	ack(t, q, ids[0]) // idempotent
	st, err := q.Stats(ctx(t), dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 0 || !st.Oldest.IsZero() || st.DeadLetters != 0 {
		t.Errorf("after acking all: %+v", st)
	}
	if more := claim(t, q, "c2", 10, time.Millisecond); len(more) != 0 {
		t.Fatalf("acknowledged messages claimed again: %v", bodies(more))
	}
}

func testClaimLimit(t *testing.T, q queue.Queue) {
	var ms []queue.Message
	for i := range 7 {
		ms = append(ms, msg("", fmt.Sprint(i)))
	}
	enqueue(t, q, ms...)
	seen := map[string]bool{}
	for _, want := range []int{3, 3, 1, 0} {
		got := claim(t, q, "c", 3, time.Minute)
		if len(got) != want {
			t.Fatalf("claim of 3 returned %d, want %d", len(got), want)
		}
		for _, m := range got {
			if seen[m.ID] {
				t.Fatalf("%s claimed twice", m.Body)
			}
			seen[m.ID] = true
		}
	}
	if got := claim(t, q, "c", 0, time.Minute); len(got) != 0 {
		t.Fatalf("claim of 0 returned %d", len(got))
	}
}

// testLeaseExpiry: a consumer that dies holding a message loses it to another when the lease
// ends; the message is the same one, and a lease ending is not an attempt.
func testLeaseExpiry(t *testing.T, q queue.Queue) {
	enqueue(t, q, msg("Patient/1", "a"), msg("Patient/1", "b"), msg("", "c"))
	const lease = 300 * time.Millisecond
	first := claim(t, q, "dead-node", 10, lease)
	if got := sortedBodies(first); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("first claim %v, want [a c]", got)
	}
	// A long lease of another consumer does not shorten or lengthen the first one.
	if got := claim(t, q, "live-node", 10, time.Hour); len(got) != 0 {
		t.Fatalf("claimed during the lease: %v", bodies(got))
	}
	time.Sleep(lease + 100*time.Millisecond)
	second := claim(t, q, "live-node", 10, time.Minute)
	if got := sortedBodies(second); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after the lease ended, claimed %v, want [a c]", got)
	}
	for _, body := range []string{"a", "c"} {
		o, n := byBody(first, body), byBody(second, body)
		if o.ID != n.ID || o.IdempotencyKey != n.IdempotencyKey || n.Attempt != 0 {
			t.Errorf("%s: first %s/%s, again %s/%s attempt %d", body, o.ID, o.IdempotencyKey, n.ID, n.IdempotencyKey, n.Attempt)
		}
	}
	// The new lease holds: the dead node's consumer does not get them back.
	if got := claim(t, q, "dead-node", 10, lease); len(got) != 0 {
		t.Fatalf("taken over during the new lease: %v", bodies(got))
	}
	ack(t, q, byBody(second, "a").ID)
	if got := claim(t, q, "live-node", 10, time.Minute); !slices.Equal(bodies(got), []string{"b"}) {
		t.Fatalf("after acking a: %v, want [b]", bodies(got))
	}
}

func testRetryNotBefore(t *testing.T, q queue.Queue) {
	enqueue(t, q, msg("Patient/1", "a"))
	m := claim(t, q, "c", 1, time.Minute)[0]
	const wait = 400 * time.Millisecond
	notBefore := time.Now().Add(wait)
	if err := q.Retry(ctx(t), dest, m.ID, notBefore, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, q, "c", 1, time.Minute); len(got) != 0 {
		t.Fatalf("claimed before notBefore: %v", bodies(got))
	}
	var again []queue.Message
	for len(again) == 0 && time.Now().Before(notBefore.Add(5*time.Second)) {
		again = claim(t, q, "c", 1, time.Minute)
		if len(again) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if time.Now().Before(notBefore) {
		t.Fatalf("claimed before notBefore")
	}
	if len(again) != 1 {
		t.Fatalf("not claimable after notBefore")
	}
	r := again[0]
	if r.ID != m.ID || r.IdempotencyKey != m.IdempotencyKey || r.Attempt != 1 || r.LastError != "HTTP 503" {
		t.Fatalf("retried message: %+v, first: %+v", r, m)
	}
	if !r.EnqueuedAt.Equal(m.EnqueuedAt) {
		t.Errorf("EnqueuedAt changed on retry: %v -> %v", m.EnqueuedAt, r.EnqueuedAt)
	}
	// Retry also works on a message whose retry is due but not yet claimed again, and counts.
	if err := q.Retry(ctx(t), dest, r.ID, time.Now(), "timeout"); err != nil {
		t.Fatal(err)
	}
	if err := q.Retry(ctx(t), dest, r.ID, time.Now(), "timeout"); err != nil {
		t.Fatal(err)
	}
	got := claim(t, q, "c", 1, time.Minute)
	if len(got) != 1 || got[0].Attempt != 3 || got[0].LastError != "timeout" {
		t.Fatalf("after two more retries: %+v", got)
	}
}

func testUnknown(t *testing.T, q queue.Queue) {
	ids := enqueue(t, q, msg("", "a"))
	c := ctx(t)
	if err := q.Ack(c, dest, "no-such-id"); err != nil {
		t.Errorf("Ack of unknown id: %v, want nil", err)
	}
	if err := q.Retry(c, dest, "no-such-id", time.Now(), "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry of unknown id: %v, want ErrNotFound", err)
	}
	if err := q.DeadLetter(c, dest, "no-such-id", "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("DeadLetter of unknown id: %v, want ErrNotFound", err)
	}
	if err := q.Retry(c, "other-endpoint", ids[0], time.Now(), "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry on the wrong destination: %v, want ErrNotFound", err)
	}
	claim(t, q, "c", 1, time.Minute)
	ack(t, q, ids[0])
	if err := q.Retry(c, dest, ids[0], time.Now(), "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry after Ack: %v, want ErrNotFound", err)
	}
	if err := q.DeadLetter(c, dest, ids[0], "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("DeadLetter after Ack: %v, want ErrNotFound", err)
	}
	if got, err := q.Claim(c, "no-such-endpoint", "c", 5, time.Minute); err != nil || len(got) != 0 {
		t.Errorf("Claim on an unknown destination: %v, %v", bodies(got), err)
	}
	if got, err := q.DeadLetters(c, "no-such-endpoint", 5); err != nil || len(got) != 0 {
		t.Errorf("DeadLetters of an unknown destination: %v, %v", bodies(got), err)
	}
	if n, err := q.Replay(c, "no-such-endpoint"); err != nil || n != 0 {
		t.Errorf("Replay all on an unknown destination: %d, %v", n, err)
	}
	if n, err := q.Replay(c, dest, "no-such-id"); err != nil || n != 0 {
		t.Errorf("Replay of unknown id: %d, %v; want 0, nil", n, err)
	}
}

// testOrderPerKey: a key's messages come one at a time in enqueue order, and a key whose head
// is waiting to retry does not hold up other keys.
func testOrderPerKey(t *testing.T, q queue.Queue) {
	enqueue(t, q, msg("P1", "p1-1"), msg("P1", "p1-2"), msg("P2", "p2-1"), msg("", "x"),
		msg("P2", "p2-2"), msg("P1", "p1-3"), msg("", "y"))
	got := claim(t, q, "c", 10, time.Minute)
	if b := sortedBodies(got); !slices.Equal(b, []string{"p1-1", "p2-1", "x", "y"}) {
		t.Fatalf("first claim %v, want heads of P1 and P2 and the unkeyed", b)
	}
	c := ctx(t)
	notBefore := time.Now().Add(500 * time.Millisecond)
	if err := q.Retry(c, dest, byBody(got, "p1-1").ID, notBefore, "down"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"p2-1", "x", "y"} {
		ack(t, q, byBody(got, b).ID)
	}
	// P2 flows past P1, whose head is retrying.
	next := claim(t, q, "c", 10, time.Minute)
	if b := bodies(next); !slices.Equal(b, []string{"p2-2"}) {
		t.Fatalf("while P1 retries: %v, want [p2-2]", b)
	}
	ack(t, q, next[0].ID)
	time.Sleep(time.Until(notBefore) + 20*time.Millisecond)
	for _, want := range []string{"p1-1", "p1-2", "p1-3"} {
		got := claim(t, q, "c", 10, time.Minute)
		if b := bodies(got); !slices.Equal(b, []string{want}) {
			t.Fatalf("claimed %v, want [%s]", b, want)
		}
		ack(t, q, got[0].ID)
	}
	if got := claim(t, q, "c", 10, time.Minute); len(got) != 0 {
		t.Fatalf("left over: %v", bodies(got))
	}
}

// testOrderPerKeyConcurrent runs several consumers at once, some deliveries failing and being
// retried: per key, the acknowledged sequence equals the enqueued one, no message is held by
// two consumers, no key by two messages, and nothing is lost.
func testOrderPerKeyConcurrent(t *testing.T, q queue.Queue) {
	const keys, perKey, unkeyedPerRound, consumers = 12, 8, 3, 4
	var ms []queue.Message
	want := map[string][]string{}
	for i := range perKey {
		for k := range keys {
			key := fmt.Sprintf("Patient/%d", k)
			body := fmt.Sprintf("%d-%d", k, i)
			ms = append(ms, msg(key, body))
			want[key] = append(want[key], body)
		}
		for u := range unkeyedPerRound {
			ms = append(ms, msg("", fmt.Sprintf("u-%d-%d", i, u)))
		}
	}
	// Several batches, so that claims interleave with enqueues.
	for i := 0; i < len(ms); i += 25 {
		enqueue(t, q, ms[i:min(i+25, len(ms))]...)
	}
	var (
		mu       sync.Mutex
		acked    = map[string][]string{}
		held     = map[string]string{} // message id -> consumer
		heldKeys = map[string]string{} // key -> message id
		done     int
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	c := ctx(t)
	var wg sync.WaitGroup
	for w := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("consumer-%d", w)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for c.Err() == nil {
				mu.Lock()
				finished := done == len(ms) || len(failures) > 0
				mu.Unlock()
				if finished {
					return
				}
				got, err := q.Claim(c, dest, name, 1+rng.IntN(4), 10*time.Second)
				if err != nil {
					fail("claim: %v", err)
					return
				}
				if len(got) == 0 {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				mu.Lock()
				for _, m := range got {
					if other, ok := held[m.ID]; ok {
						failures = append(failures, fmt.Sprintf("%s held by %s and %s", m.Body, other, name))
					}
					held[m.ID] = name
					if m.Key != "" {
						if other, ok := heldKeys[m.Key]; ok {
							failures = append(failures, fmt.Sprintf("key %s: %s claimed while %s held", m.Key, m.ID, other))
						}
						heldKeys[m.Key] = m.ID
					}
				}
				mu.Unlock()
				for _, m := range got {
					retry := rng.IntN(4) == 0
					mu.Lock()
					delete(held, m.ID)
					if m.Key != "" {
						delete(heldKeys, m.Key)
					}
					if !retry {
						// Recorded before Ack: the key's next message cannot be claimed before
						// Ack returns.
						acked[m.Key] = append(acked[m.Key], string(m.Body))
						done++
					}
					mu.Unlock()
					if retry {
						err = q.Retry(c, dest, m.ID, time.Now().Add(time.Duration(rng.IntN(5))*time.Millisecond), "flaky")
					} else {
						err = q.Ack(c, dest, m.ID)
					}
					if err != nil {
						fail("finishing %s: %v", m.Body, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d violations, first: %s", len(failures), failures[0])
	}
	if c.Err() != nil {
		t.Fatalf("timed out with %d of %d acknowledged", done, len(ms))
	}
	for key, seq := range want {
		if !slices.Equal(acked[key], seq) {
			t.Errorf("key %s acknowledged %v, enqueued %v", key, acked[key], seq)
		}
	}
	if len(acked[""]) != perKey*unkeyedPerRound {
		t.Errorf("acknowledged %d unkeyed messages, want %d", len(acked[""]), perKey*unkeyedPerRound)
	}
	st, err := q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 0 {
		t.Errorf("depth %d after all acknowledged", st.Depth)
	}
}

// testExclusiveClaims: consumers claiming at the same moment never get the same message.
func testExclusiveClaims(t *testing.T, q queue.Queue) {
	const total, consumers = 60, 6
	var ms []queue.Message
	for i := range total {
		ms = append(ms, msg("", fmt.Sprint(i)))
	}
	enqueue(t, q, ms...)
	var wg sync.WaitGroup
	results := make([][]queue.Message, consumers)
	errs := make([]error, consumers)
	start := make(chan struct{})
	for w := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				got, err := q.Claim(ctx(t), dest, fmt.Sprintf("c%d", w), 4, time.Minute)
				if err != nil {
					errs[w] = err
					return
				}
				if len(got) == 0 {
					return
				}
				results[w] = append(results[w], got...)
			}
		}()
	}
	close(start)
	wg.Wait()
	seen := map[string]int{}
	for w, r := range results {
		if errs[w] != nil {
			t.Fatalf("consumer %d: %v", w, errs[w])
		}
		for _, m := range r {
			if prev, ok := seen[m.ID]; ok {
				t.Fatalf("%s claimed by consumers %d and %d", m.Body, prev, w)
			}
			seen[m.ID] = w
		}
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct messages, want %d", len(seen), total)
	}
}

func testDeadLetterAndReplay(t *testing.T, q queue.Queue) {
	enqueue(t, q, msg("P1", "p1-1"), msg("P1", "p1-2"), msg("", "x"), msg("", "y"))
	c := ctx(t)
	got := claim(t, q, "c", 10, time.Minute)
	if b := sortedBodies(got); !slices.Equal(b, []string{"p1-1", "x", "y"}) {
		t.Fatalf("claimed %v", b)
	}
	p11 := byBody(got, "p1-1")
	if err := q.Retry(c, dest, p11.ID, time.Now(), "HTTP 500"); err != nil {
		t.Fatal(err)
	}
	// A retrying message can be dead-lettered too (attempt limit reached while waiting).
	for _, d := range []struct{ body, err string }{{"p1-1", "HTTP 400: bad bundle"}, {"x", "HTTP 404"}} {
		if err := q.DeadLetter(c, dest, byBody(got, d.body).ID, d.err); err != nil {
			t.Fatal(err)
		}
	}
	// Dead-lettering the head releases the key.
	next := claim(t, q, "c", 10, time.Minute)
	if b := bodies(next); !slices.Equal(b, []string{"p1-2"}) {
		t.Fatalf("after dead-lettering p1-1: %v, want [p1-2]", b)
	}
	dead, err := q.DeadLetters(c, dest, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b := bodies(dead); !slices.Equal(b, []string{"p1-1", "x"}) {
		t.Fatalf("dead letters %v, want [p1-1 x] oldest first", b)
	}
	d0 := dead[0]
	if d0.ID != p11.ID || d0.IdempotencyKey != p11.IdempotencyKey || d0.LastError != "HTTP 400: bad bundle" ||
		d0.Attempt != 1 || d0.Key != "P1" || d0.Destination != dest {
		t.Errorf("dead letter: %+v", d0)
	}
	if lim, err := q.DeadLetters(c, dest, 1); err != nil || !slices.Equal(bodies(lim), []string{"p1-1"}) {
		t.Errorf("DeadLetters limit 1: %v, %v", bodies(lim), err)
	}
	st, err := q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 2 || st.Depth != 2 { // p1-2 and y are claimed, not finished
		t.Errorf("stats %+v, want 2 dead letters and depth 2", st)
	}
	// Dead letters are not claimable, and Ack does not remove them.
	ack(t, q, d0.ID)
	if got := claim(t, q, "c2", 10, time.Minute); len(got) != 0 {
		t.Fatalf("dead letters claimable: %v", bodies(got))
	}
	// Replay one: behind p1-2, which still holds the key.
	if n, err := q.Replay(c, dest, d0.ID); err != nil || n != 1 {
		t.Fatalf("Replay one: %d, %v", n, err)
	}
	if n, err := q.Replay(c, dest, d0.ID); err != nil || n != 0 {
		t.Fatalf("Replay of a replayed message: %d, %v; want 0", n, err)
	}
	if got := claim(t, q, "c2", 10, time.Minute); len(got) != 0 {
		t.Fatalf("replayed p1-1 claimable while p1-2 holds the key: %v", bodies(got))
	}
	ack(t, q, byBody(next, "p1-2").ID)
	re := claim(t, q, "c2", 10, time.Minute)
	if len(re) != 1 || string(re[0].Body) != "p1-1" {
		t.Fatalf("after replay: %v, want [p1-1]", bodies(re))
	}
	if r := re[0]; r.ID != d0.ID || r.IdempotencyKey != d0.IdempotencyKey || r.Attempt != 0 {
		t.Errorf("replayed message %+v: want same ID and idempotency key, attempt 0", r)
	}
	// Replay all.
	if err := q.DeadLetter(c, dest, re[0].ID, "again"); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Replay(c, dest); err != nil || n != 2 {
		t.Fatalf("Replay all: %d, %v; want 2", n, err)
	}
	if dead, err := q.DeadLetters(c, dest, 0); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters after replaying all: %v, %v", bodies(dead), err)
	}
	if b := sortedBodies(claim(t, q, "c2", 10, time.Minute)); !slices.Equal(b, []string{"p1-1", "x"}) {
		t.Fatalf("after replaying all: %v", b)
	}
	if st, err := q.Stats(c, dest); err != nil || st.DeadLetters != 0 || st.Depth != 3 {
		t.Errorf("stats %+v, %v; want no dead letters, depth 3 (p1-1, x, y)", st, err)
	}
}

func testStats(t *testing.T, q queue.Queue) {
	c := ctx(t)
	st, err := q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	if st != (queue.Stats{}) {
		t.Fatalf("empty queue: %+v", st)
	}
	t0 := time.Now()
	first := enqueue(t, q, msg("K", "a"))
	time.Sleep(20 * time.Millisecond)
	t1 := time.Now()
	enqueue(t, q, msg("K", "b"), msg("", "c"))
	enqueue(t, q, queue.Message{Destination: "endpoint-b", Body: []byte("other")})
	st, err = q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	near := func(got, want time.Time) bool {
		d := got.Sub(want)
		return d > -2*time.Millisecond && d < 200*time.Millisecond
	}
	if st.Depth != 3 || !near(st.Oldest, t0) || st.DeadLetters != 0 {
		t.Errorf("stats %+v, want depth 3, oldest about %v", st, t0)
	}
	// Claimed and retrying messages still count.
	got := claim(t, q, "c", 10, time.Minute)
	if err := q.Retry(c, dest, byBody(got, "a").ID, time.Now().Add(time.Hour), "x"); err != nil {
		t.Fatal(err)
	}
	if st, _ = q.Stats(c, dest); st.Depth != 3 {
		t.Errorf("depth %d with one claimed and one retrying, want 3", st.Depth)
	}
	if err := q.DeadLetter(c, dest, first[0], "gone"); err != nil {
		t.Fatal(err)
	}
	st, err = q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 2 || !near(st.Oldest, t1) || st.DeadLetters != 1 {
		t.Errorf("stats %+v, want depth 2, oldest about %v, 1 dead letter", st, t1)
	}
	if st, _ := q.Stats(c, "endpoint-b"); st.Depth != 1 {
		t.Errorf("endpoint-b depth %d, want 1", st.Depth)
	}
}

func testDestinations(t *testing.T, q queue.Queue) {
	c := ctx(t)
	ds, err := q.Destinations(c)
	if err != nil || len(ds) != 0 {
		t.Fatalf("empty queue: %v, %v", ds, err)
	}
	ids := enqueue(t, q, queue.Message{Destination: "zeta"}, queue.Message{Destination: "alpha"},
		queue.Message{Destination: "zeta"})
	if _, err := q.Claim(c, "alpha", "c", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(c, "alpha", ids[1]); err != nil {
		t.Fatal(err)
	}
	// alpha had messages: it is still listed.
	ds, err = q.Destinations(c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ds, []string{"alpha", "zeta"}) {
		t.Errorf("destinations %v, want [alpha zeta]", ds)
	}
	if _, err := q.Enqueue(c, queue.Message{Body: []byte("nowhere")}); err == nil {
		t.Errorf("a message without destination was accepted")
	}
}

// Reopen returns a queue and a function that opens the same storage again (new client or
// reopened store) after the first has been closed.
type Reopen func(t testing.TB) (q queue.Queue, reopen func() queue.Queue)

// RunReopen checks that every kind of message survives closing and reopening the backend.
func RunReopen(t *testing.T, open Reopen) {
	q, reopen := open(t)
	enqueue(t, q, msg("P1", "p1-1"), msg("P1", "p1-2"), msg("", "claimed"), msg("", "retrying"),
		msg("", "dead"), msg("", "waiting"))
	c := ctx(t)
	const lease = 300 * time.Millisecond
	claimedAt := time.Now()
	got := claim(t, q, "c", 4, lease)
	if b := sortedBodies(got); !slices.Equal(b, []string{"claimed", "dead", "p1-1", "retrying"}) {
		t.Fatalf("claimed %v", b)
	}
	if err := q.Retry(c, dest, byBody(got, "retrying").ID, time.Now(), "503"); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(c, dest, byBody(got, "dead").ID, "400"); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = reopen()
	st, err := q.Stats(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 5 || st.DeadLetters != 1 {
		t.Errorf("after reopening: %+v, want depth 5 and 1 dead letter", st)
	}
	if dead, err := q.DeadLetters(c, dest, 0); err != nil || len(dead) != 1 || dead[0].LastError != "400" {
		t.Errorf("dead letters after reopening: %+v, %v", dead, err)
	}
	if ds, err := q.Destinations(c); err != nil || !slices.Equal(ds, []string{dest}) {
		t.Errorf("destinations after reopening: %v, %v", ds, err)
	}
	// Leases survive too: the claimed messages come back only when they end.
	now := claim(t, q, "c2", 10, time.Minute)
	if b := sortedBodies(now); !slices.Equal(b, []string{"retrying", "waiting"}) {
		t.Fatalf("claimable at once after reopening: %v, want [retrying waiting]", b)
	}
	if r := byBody(now, "retrying"); r.Attempt != 1 || r.LastError != "503" {
		t.Errorf("retrying message after reopening: %+v", r)
	}
	time.Sleep(time.Until(claimedAt.Add(lease)) + 50*time.Millisecond)
	later := claim(t, q, "c2", 10, time.Minute)
	if b := sortedBodies(later); !slices.Equal(b, []string{"claimed", "p1-1"}) {
		t.Fatalf("after the leases ended: %v, want [claimed p1-1]", b)
	}
	ack(t, q, byBody(later, "p1-1").ID)
	if b := bodies(claim(t, q, "c2", 10, time.Minute)); !slices.Equal(b, []string{"p1-2"}) {
		t.Fatalf("key order after reopening: %v, want [p1-2]", b)
	}
}

// Bench measures enqueue, claim and ack throughput: batches of 100 messages over 10 keys (as
// the outbox relay and the workers use the queue) and one message at a time.
func Bench(b *testing.B, open Open) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			q := open(b)
			c := context.Background()
			ms := make([]queue.Message, batch)
			for i := range ms {
				ms[i] = queue.Message{Destination: dest, Key: fmt.Sprintf("Patient/%d", i%10), Body: make([]byte, 512)}
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := q.Enqueue(c, ms...); err != nil {
					b.Fatal(err)
				}
				for left := batch; left > 0; {
					got, err := q.Claim(c, dest, "bench", left, time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					if len(got) == 0 {
						b.Fatalf("nothing claimable with %d left", left)
					}
					for _, m := range got {
						if err := q.Ack(c, dest, m.ID); err != nil {
							b.Fatal(err)
						}
					}
					left -= len(got)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "msgs/s")
		})
	}
	// Several workers at once (GOMAXPROCS goroutines), each enqueueing one message and then
	// claiming and acknowledging whatever is ready; the rest is drained at the end.
	b.Run("parallel", func(b *testing.B) {
		q := open(b)
		c := context.Background()
		var worker atomic.Int64
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprintf("bench-%d", worker.Add(1))
			i := 0
			for pb.Next() {
				i++
				m := queue.Message{Destination: dest, Key: fmt.Sprintf("Patient/%s-%d", name, i%10), Body: make([]byte, 512)}
				if _, err := q.Enqueue(c, m); err != nil {
					b.Error(err)
					return
				}
				got, err := q.Claim(c, dest, name, 1, time.Minute)
				if err != nil {
					b.Error(err)
					return
				}
				for _, m := range got {
					if err := q.Ack(c, dest, m.ID); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
		for {
			got, err := q.Claim(c, dest, "drain", 100, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			for _, m := range got {
				if err := q.Ack(c, dest, m.ID); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		if st, err := q.Stats(c, dest); err != nil || st.Depth != 0 {
			b.Fatalf("left %+v, %v", st, err)
		}
	})
}
