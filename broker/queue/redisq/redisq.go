// Package redisq is the Redis Streams queue backend, for brokers with several nodes.
//
// Each destination has a stream read through one consumer group; a claim is a stream entry
// pending for the claiming consumer, and a lease that ended is taken over with XAUTOCLAIM.
// Retries wait in a sorted set scored by their not-before time and re-enter the stream when
// due; dead letters go to a stream of their own. Order per key is kept by letting at most one
// message of a key into the stream (or the retry set) at a time; the others are parked in a
// list per key and released one by one. See scripts.go for the keys.
package redisq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/hjbroker/hjbroker/broker/queue"
)

const (
	group = "hjb"
	// leaseHorizon bounds leases: claimed entries are given an idle time of leaseHorizon minus
	// their lease, and XAUTOCLAIM takes over those idle for leaseHorizon.
	leaseHorizon = 24 * time.Hour
	// maxClaim bounds one claim (the script's stack and run time).
	maxClaim = 1000
)

// Queue is a queue.Queue on Redis.
type Queue struct {
	c      *redis.Client
	prefix string
}

var _ queue.Queue = (*Queue)(nil)

// New returns a queue keeping its keys under prefix (for example "hjb:q:"). The client stays
// the caller's: Close does not close it.
func New(client *redis.Client, prefix string) *Queue {
	return &Queue{c: client, prefix: prefix}
}

// base is the key prefix of one destination; the hash tag keeps its keys in one cluster slot.
func (q *Queue) base(destination string) string {
	return q.prefix + "{" + destination + "}:"
}

func (q *Queue) destinationsKey() string { return q.prefix + "destinations" }

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// Enqueue appends messages. Messages for one destination are added atomically; a call with
// several destinations runs one step per destination.
func (q *Queue) Enqueue(ctx context.Context, msgs ...queue.Message) ([]string, error) {
	ids := make([]string, len(msgs))
	args := map[string][]any{}
	var order []string
	now := micros(time.Now())
	for i, m := range msgs {
		if m.Destination == "" {
			return nil, errors.New("queue: message without destination")
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[i] = id.String()
		idem := m.IdempotencyKey
		if idem == "" {
			idem = ids[i]
		}
		if _, ok := args[m.Destination]; !ok {
			order = append(order, m.Destination)
			args[m.Destination] = []any{q.base(m.Destination), group, m.Destination}
		}
		args[m.Destination] = append(args[m.Destination], ids[i], m.Key, idem, m.Body, now)
	}
	for _, d := range order {
		keys := []string{q.base(d) + "s", q.destinationsKey()}
		if err := enqueueScript.Run(ctx, q.c, keys, args[d]...).Err(); err != nil {
			return nil, fmt.Errorf("queue: enqueue to %s: %w", d, err)
		}
	}
	return ids, nil
}

// Claim leases up to n ready messages of destination to consumer.
func (q *Queue) Claim(ctx context.Context, destination, consumer string, n int, lease time.Duration) ([]queue.Message, error) {
	if n <= 0 {
		return nil, nil
	}
	if lease <= 0 {
		return nil, errors.New("queue: lease must be positive")
	}
	n = min(n, maxClaim)
	lease = min(lease, leaseHorizon)
	base := q.base(destination)
	res, err := claimScript.Run(ctx, q.c, []string{base + "s"},
		base, group, consumer, n, micros(time.Now()),
		leaseHorizon.Milliseconds(), (leaseHorizon - lease).Milliseconds(), 10*n+100).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: claim from %s: %w", destination, err)
	}
	return decode(destination, res)
}

// decode turns script rows (id, key, idempotency key, body, attempt, enqueued µs, last error)
// into messages.
func decode(destination string, rows []any) ([]queue.Message, error) {
	out := make([]queue.Message, 0, len(rows))
	for _, r := range rows {
		f, ok := r.([]any)
		if !ok || len(f) != 7 {
			return nil, fmt.Errorf("queue: unexpected script row %v", r)
		}
		s := make([]string, 7)
		for i, v := range f {
			s[i], _ = v.(string)
		}
		attempt, err := strconv.Atoi(s[4])
		if err != nil {
			return nil, fmt.Errorf("queue: message %s: attempt %q", s[0], s[4])
		}
		t, err := strconv.ParseInt(s[5], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("queue: message %s: enqueue time %q", s[0], s[5])
		}
		out = append(out, queue.Message{
			ID: s[0], Destination: destination, Key: s[1], IdempotencyKey: s[2], Body: []byte(s[3]),
			Attempt: attempt, EnqueuedAt: time.UnixMicro(t), LastError: s[6],
		})
	}
	return out, nil
}

// Ack finishes a message; acknowledging one that is already finished does nothing.
func (q *Queue) Ack(ctx context.Context, destination, id string) error {
	base := q.base(destination)
	if err := ackScript.Run(ctx, q.c, []string{base + "s"}, base, group, id).Err(); err != nil {
		return fmt.Errorf("queue: ack %s: %w", id, err)
	}
	return nil
}

// Retry reschedules a message no earlier than notBefore.
func (q *Queue) Retry(ctx context.Context, destination, id string, notBefore time.Time, lastErr string) error {
	base := q.base(destination)
	n, err := retryScript.Run(ctx, q.c, []string{base + "s"}, base, group, id, micros(notBefore), lastErr).Int()
	if err != nil {
		return fmt.Errorf("queue: retry %s: %w", id, err)
	}
	if n == 0 {
		return queue.ErrNotFound
	}
	return nil
}

// DeadLetter moves a message to the destination's dead-letter stream.
func (q *Queue) DeadLetter(ctx context.Context, destination, id, lastErr string) error {
	base := q.base(destination)
	n, err := deadLetterScript.Run(ctx, q.c, []string{base + "s"}, base, group, id, lastErr).Int()
	if err != nil {
		return fmt.Errorf("queue: dead-letter %s: %w", id, err)
	}
	if n == 0 {
		return queue.ErrNotFound
	}
	return nil
}

// DeadLetters lists dead letters in the order they died; limit <= 0 lists all.
func (q *Queue) DeadLetters(ctx context.Context, destination string, limit int) ([]queue.Message, error) {
	base := q.base(destination)
	res, err := deadLettersScript.Run(ctx, q.c, []string{base + "d"}, base, max(limit, 0)).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", destination, err)
	}
	return decode(destination, res)
}

// Replay moves dead letters back to the queue, behind the messages already waiting for their
// key. A replayed message starts again: Attempt 0 and EnqueuedAt now (so the maximum age
// counts from the replay); ID, IdempotencyKey and LastError stay.
func (q *Queue) Replay(ctx context.Context, destination string, ids ...string) (int, error) {
	base := q.base(destination)
	args := []any{base, group, micros(time.Now())}
	for _, id := range ids {
		args = append(args, id)
	}
	n, err := replayScript.Run(ctx, q.c, []string{base + "s"}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: replay on %s: %w", destination, err)
	}
	return n, nil
}

// Stats reports depth, the oldest enqueue time and the dead-letter count.
func (q *Queue) Stats(ctx context.Context, destination string) (queue.Stats, error) {
	base := q.base(destination)
	p := q.c.Pipeline()
	depth := p.ZCard(ctx, base+"a")
	oldest := p.ZRangeWithScores(ctx, base+"a", 0, 0)
	dead := p.XLen(ctx, base+"d")
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return queue.Stats{}, fmt.Errorf("queue: stats of %s: %w", destination, err)
	}
	st := queue.Stats{Depth: int(depth.Val()), DeadLetters: int(dead.Val())}
	if o := oldest.Val(); len(o) == 1 {
		st.Oldest = time.UnixMicro(int64(o[0].Score))
	}
	return st, nil
}

// Destinations lists the destinations ever enqueued to, sorted.
func (q *Queue) Destinations(ctx context.Context) ([]string, error) {
	ds, err := q.c.SMembers(ctx, q.destinationsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: destinations: %w", err)
	}
	sort.Strings(ds)
	return ds, nil
}

// Close does nothing: the client belongs to the caller.
func (q *Queue) Close() error { return nil }
