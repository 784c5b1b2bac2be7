// Package queue holds delivery work between the outbox relay and the delivery workers. Two
// backends pass one contract suite: Redis Streams (HJB_REDIS_URL) for many broker nodes, and an
// embedded queue on the broker's own store for a single node.
//
// Semantics every backend provides:
//   - one logical queue per destination (endpoint id);
//   - at-least-once: a claimed message that is neither acknowledged, retried nor dead-lettered
//     before its lease ends becomes claimable again (by any node);
//   - order per key: messages with the same non-empty Key are claimable one at a time in
//     enqueue order — a later one is not handed out while an earlier one is claimed, waiting to
//     be retried, or otherwise unfinished; messages with other keys flow past it;
//   - Retry reschedules a message (same ID and IdempotencyKey, Attempt+1) no earlier than a
//     given time; DeadLetter moves it to the destination's dead-letter list with its last error,
//     which releases the key; Replay moves a dead letter back to the queue.
package queue

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound: no message with that id in that place.
var ErrNotFound = errors.New("queue: message not found")

// Message is one unit of delivery work.
type Message struct {
	// ID is assigned by the backend on Enqueue and stays the same across retries.
	ID string
	// Destination is the endpoint id the message is for.
	Destination string
	// Key orders messages: the patient reference ("Patient/123") for patient data, "" for none.
	Key string
	// IdempotencyKey is sent with every attempt (X-Request-ID) so receivers drop duplicates.
	IdempotencyKey string
	// Body is the delivery description (JSON), opaque to the queue.
	Body []byte
	// Attempt counts deliveries tried so far (0 before the first).
	Attempt int
	// EnqueuedAt is when the message first entered the queue (for the maximum age).
	EnqueuedAt time.Time
	// LastError is the error of the last failed attempt.
	LastError string
}

// Queue is a delivery queue backend.
type Queue interface {
	// Enqueue appends messages; IDs are assigned and returned in order.
	Enqueue(ctx context.Context, msgs ...Message) ([]string, error)
	// Claim leases up to n messages of destination that are ready (due, and first of their
	// key) to consumer for lease; expired leases of other consumers are taken over.
	Claim(ctx context.Context, destination, consumer string, n int, lease time.Duration) ([]Message, error)
	// Ack finishes a delivered message.
	Ack(ctx context.Context, destination, id string) error
	// Retry reschedules a claimed message no earlier than notBefore, recording lastErr.
	Retry(ctx context.Context, destination, id string, notBefore time.Time, lastErr string) error
	// DeadLetter moves a claimed message to the dead-letter list with lastErr.
	DeadLetter(ctx context.Context, destination, id, lastErr string) error
	// DeadLetters lists a destination's dead letters, oldest first.
	DeadLetters(ctx context.Context, destination string, limit int) ([]Message, error)
	// Replay moves dead letters back to the queue (all of the destination's when ids is empty);
	// it returns how many moved.
	Replay(ctx context.Context, destination string, ids ...string) (int, error)
	// Stats reports the destination's depth (messages not yet acknowledged, dead letters
	// excluded) and the enqueue time of the oldest of them.
	Stats(ctx context.Context, destination string) (Stats, error)
	// Destinations lists destinations that have or had messages.
	Destinations(ctx context.Context) ([]string, error)
	Close() error
}

// Stats describe one destination's queue.
type Stats struct {
	Depth       int
	Oldest      time.Time // zero when empty
	DeadLetters int
}
