// Package routing decides where events go: it matches configured routes against resource
// events, writes the resulting deliveries to the outbox in the same store transaction as the
// resource, and relays them to the delivery queue.
package routing

import "time"

// EventKind is what happened.
type EventKind string

// Event kinds routes match on.
const (
	Create     EventKind = "create"
	Update     EventKind = "update"
	Delete     EventKind = "delete"
	Message    EventKind = "message"     // a FHIR message ($process-message); Event.MessageEvent set
	TaskStatus EventKind = "task-status" // a Task's status changed; Event.TaskStatus set
)

// Event is a stored change, as the engine reports it inside the write transaction.
type Event struct {
	Kind         EventKind
	ResourceType string
	ID           string
	Version      int64
	// Resource is the stored JSON (nil for a delete).
	Resource map[string]any
	// SourceAgency is the agency id of the client that made the change ("" when unknown).
	SourceAgency string
	// MessageEvent is the MessageHeader.event code for Message events.
	MessageEvent string
	// TaskStatus is the new status for TaskStatus events (and PreviousStatus the old one).
	TaskStatus, PreviousStatus string
	// Patient is the patient the resource is about ("Patient/123"), when known.
	Patient string
	At      time.Time
}

// Delivery is one piece of work: send a resource version to one endpoint. It is the queue
// message body (JSON).
type Delivery struct {
	ID string `json:"id"` // idempotency key, sent as X-Request-ID on every attempt
	// Route and Destination name the matched route and the endpoint (agency endpoint id).
	Route       string `json:"route"`
	Destination string `json:"destination"`
	Agency      string `json:"agency"`
	// SourceAgency is the agency that made the change ("" when unknown); consent defaults
	// and sharing rules are checked again at delivery time by source and destination kind.
	SourceAgency string `json:"sourceAgency,omitempty"`
	Purpose      string `json:"purpose"`
	Transform    string `json:"transform,omitempty"`
	Event        string `json:"event"` // EventKind
	// The resource version to deliver; the worker reads it from the store at delivery time.
	ResourceType string    `json:"resourceType"`
	ResourceID   string    `json:"resourceId"`
	Version      int64     `json:"version"`
	Patient      string    `json:"patient,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
}

// State is a delivery's state as the admin API shows it.
type State string

// Delivery states.
const (
	Pending   State = "pending"
	Delivered State = "delivered"
	Retrying  State = "retrying"
	Dead      State = "dead"
	Withheld  State = "withheld" // blocked by consent or sharing rules at delivery time
)
