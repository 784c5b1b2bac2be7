package routing

import (
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
)

// Built-in transform names.
const (
	// TransformNone sends the stored resource as it is (also the meaning of no transform).
	TransformNone = "none"
	// TransformFHIRMessage wraps the resource in a FHIR message Bundle with a MessageHeader.
	TransformFHIRMessage = "fhir-message"
	// TransformGPHandback turns a finished custody Encounter into the hand-back document for
	// the person's GP. It reads the store, so a node registers it (broker/app); NewTransforms
	// holds its name so that configurations naming it compile without a node.
	TransformGPHandback = "gp-handback"
)

// WithheldError is the error a transform returns when the delivery must not be made at all (no
// recipient may have it); the delivery is recorded as withheld with Reason, not retried.
type WithheldError struct{ Reason string }

func (w *WithheldError) Error() string { return "withheld: " + w.Reason }

// Code systems and identifier systems used in the messages the broker builds.
const (
	// SystemRoutingEvent codes MessageHeader.eventCoding of fhir-message deliveries with the
	// event that caused them (create, update, delete, message, task-status).
	SystemRoutingEvent = "https://hjbroker.dev/fhir/CodeSystem/routing-event"
	// SystemODS identifies organisations by ODS code.
	SystemODS = "https://fhir.nhs.uk/Id/ods-organization-code"
)

// TransformInput is what a transform works from at delivery time.
type TransformInput struct {
	Delivery Delivery
	// Resource is the stored resource version (nil for a delete).
	Resource map[string]any
	// Endpoint and Agency are the destination; Source is the agency that made the change,
	// nil when unknown.
	Endpoint config.Endpoint
	Agency   config.Agency
	Source   *config.Agency
	// BaseURL is the broker's FHIR base URL ("" when not known), used for fullUrls and the
	// message source.
	BaseURL string
}

// Transform turns a stored resource into the body sent to one endpoint. It must give the
// same output for the same input, so that a retried delivery sends the same content.
type Transform func(in TransformInput) (map[string]any, error)

// Transforms is a registry of named transforms. Routes may only name registered ones.
type Transforms struct {
	byName map[string]Transform
	// nodeOnly names transforms a node provides; until it does they fail.
	nodeOnly map[string]bool
}

var transformName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// NewTransforms returns a registry holding the built-in transforms, none and fhir-message.
func NewTransforms() *Transforms {
	t := &Transforms{byName: map[string]Transform{}, nodeOnly: map[string]bool{}}
	t.byName[TransformNone] = func(in TransformInput) (map[string]any, error) { return in.Resource, nil }
	t.byName[TransformFHIRMessage] = fhirMessage
	t.byName[TransformGPHandback] = func(TransformInput) (map[string]any, error) {
		return nil, fmt.Errorf("transform %s is provided by a broker node and is not available here", TransformGPHandback)
	}
	t.nodeOnly[TransformGPHandback] = true
	return t
}

// Register adds a transform; names are unique and shaped like configuration ids. A node
// provides the node-only transforms (TransformGPHandback) by registering them once.
func (t *Transforms) Register(name string, f Transform) error {
	if !transformName.MatchString(name) {
		return fmt.Errorf("transform name %q: want lower-case letters, digits and hyphens", name)
	}
	if _, dup := t.byName[name]; dup && !t.nodeOnly[name] {
		return fmt.Errorf("transform %q is already registered", name)
	}
	delete(t.nodeOnly, name)
	t.byName[name] = f
	return nil
}

// Lookup returns the named transform; "" is none.
func (t *Transforms) Lookup(name string) (Transform, bool) {
	if name == "" {
		name = TransformNone
	}
	f, ok := t.byName[name]
	return f, ok
}

// Names lists the registered names in order.
func (t *Transforms) Names() []string {
	out := make([]string, 0, len(t.byName))
	for n := range t.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Apply runs the delivery's transform.
func (t *Transforms) Apply(in TransformInput) (map[string]any, error) {
	f, ok := t.Lookup(in.Delivery.Transform)
	if !ok {
		return nil, fmt.Errorf("delivery %s: unknown transform %q", in.Delivery.ID, in.Delivery.Transform)
	}
	return f(in)
}

// fhirMessage builds a message Bundle: a MessageHeader whose focus is the resource, and the
// resource. Ids derive from the delivery id and the timestamp is the delivery's creation
// time, so every attempt of one delivery sends the same Bundle.
func fhirMessage(in TransformInput) (map[string]any, error) {
	d := in.Delivery
	derived := func(part string) string {
		return uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:hjbroker:delivery:"+d.ID+"#"+part)).String()
	}
	source := in.BaseURL
	if source == "" {
		source = "urn:uuid:" + derived("source")
	}
	headerURL := "urn:uuid:" + derived("header")
	header := map[string]any{
		"resourceType": "MessageHeader",
		"id":           derived("header"),
		"eventCoding":  map[string]any{"system": SystemRoutingEvent, "code": d.Event},
		"destination": []any{map[string]any{
			"name":     in.Agency.Name,
			"endpoint": in.Endpoint.URL,
			"receiver": orgRef(in.Agency),
		}},
		"source": map[string]any{"name": "hjbroker", "endpoint": source},
	}
	if in.Source != nil {
		header["sender"] = orgRef(*in.Source)
	}
	entries := []any{map[string]any{"fullUrl": headerURL, "resource": header}}
	if in.Resource != nil {
		resURL := "urn:uuid:" + derived("focus")
		if in.BaseURL != "" && d.ResourceType != "" && d.ResourceID != "" {
			resURL = in.BaseURL + "/" + d.ResourceType + "/" + d.ResourceID
		}
		header["focus"] = []any{map[string]any{"reference": resURL}}
		entries = append(entries, map[string]any{"fullUrl": resURL, "resource": in.Resource})
	}
	return map[string]any{
		"resourceType": "Bundle",
		"id":           d.ID,
		"type":         "message",
		"timestamp":    d.CreatedAt.UTC().Format(time.RFC3339Nano),
		"entry":        entries,
	}, nil
}

func orgRef(a config.Agency) map[string]any {
	return map[string]any{
		"identifier": map[string]any{"system": SystemODS, "value": a.ODS},
		"display":    a.Name,
	}
}
