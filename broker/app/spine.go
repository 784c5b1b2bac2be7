package app

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store"
)

// SpineOptions connect the broker to Spine-style services: the PDS fallback of Patient
// identifier searches and Patient/{id}/$summary (the SCR). Both are off when URL is empty.
type SpineOptions struct {
	// URL is the API platform base (HJB_SPINE_URL): https://int.api.service.nhs.uk, or
	// the URL of `hjbroker spine-sim`.
	URL string
	// ClientID is the broker's API key there (HJB_SPINE_CLIENT_ID); KeyID the kid of its
	// registered public key (HJB_SPINE_KEY_ID); KeyFile the PEM RSA private key signing the
	// client assertions (HJB_SPINE_KEY_FILE). Key may be set instead of KeyFile.
	ClientID, KeyID, KeyFile string
	Key                      *rsa.PrivateKey
	// Timeout bounds each attempt (HJB_SPINE_TIMEOUT, default 10s); Attempts bounds the
	// attempts of one request (HJB_SPINE_ATTEMPTS, default 3).
	Timeout  time.Duration
	Attempts int
	// ASID is the broker's Spine ASID, the observer of the SCR privacy alerts it sends
	// (HJB_SPINE_ASID).
	ASID string
}

func (o *SpineOptions) fromEnv() error {
	str := func(dst *string, key string) {
		if v := os.Getenv(key); v != "" && *dst == "" {
			*dst = v
		}
	}
	str(&o.URL, "HJB_SPINE_URL")
	str(&o.ClientID, "HJB_SPINE_CLIENT_ID")
	str(&o.KeyID, "HJB_SPINE_KEY_ID")
	str(&o.KeyFile, "HJB_SPINE_KEY_FILE")
	str(&o.ASID, "HJB_SPINE_ASID")
	if v := os.Getenv("HJB_SPINE_TIMEOUT"); v != "" && o.Timeout == 0 {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("HJB_SPINE_TIMEOUT=%q: want a positive duration such as 10s", v)
		}
		o.Timeout = d
	}
	if v := os.Getenv("HJB_SPINE_ATTEMPTS"); v != "" && o.Attempts == 0 {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("HJB_SPINE_ATTEMPTS=%q: want a positive integer", v)
		}
		o.Attempts = n
	}
	return nil
}

// spineParts are the broker's Spine features; nil client means they are off.
type spineParts struct {
	client *spine.Client
	node   *Node
	pol    *policy.Engine
	asid   string
	now    func() time.Time
}

// newSpine builds the Spine client from the options; off (no client) without a URL.
func newSpine(o SpineOptions, n *Node, pol *policy.Engine) (*spineParts, error) {
	sp := &spineParts{node: n, pol: pol, asid: o.ASID, now: time.Now}
	if o.URL == "" {
		return sp, nil
	}
	key := o.Key
	if key == nil {
		if o.KeyFile == "" {
			return nil, errors.New("HJB_SPINE_URL is set but HJB_SPINE_KEY_FILE (the private key signing client assertions) is not")
		}
		pem, err := os.ReadFile(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading HJB_SPINE_KEY_FILE: %w", err)
		}
		if key, err = spine.ParsePrivateKeyPEM(pem); err != nil {
			return nil, fmt.Errorf("HJB_SPINE_KEY_FILE %s: %w", o.KeyFile, err)
		}
	}
	c, err := spine.New(spine.Config{BaseURL: o.URL, ClientID: o.ClientID, KeyID: o.KeyID, Key: key,
		Timeout: o.Timeout, MaxAttempts: o.Attempts})
	if err != nil {
		return nil, fmt.Errorf("spine (HJB_SPINE_*): %w", err)
	}
	sp.client = c
	return sp, nil
}

// operations adds $summary to the node's operations when the Spine is configured.
func (sp *spineParts) operations(ops map[string]engine.Operation) map[string]engine.Operation {
	if sp.client != nil {
		ops[engine.OperationKey("Patient", true, "summary")] = sp.summary
	}
	return ops
}

// resolvers gives the engine the PDS fallback of Patient searches when the Spine is
// configured.
func (sp *spineParts) resolvers() map[string]engine.Resolver {
	if sp.client == nil {
		return nil
	}
	return map[string]engine.Resolver{"Patient": pdsResolver{sp}}
}

// spineContext carries the broker's request id to the Spine as X-Correlation-ID.
func spineContext(ctx context.Context, req *engine.Request) context.Context {
	if id := req.Header.Get("X-Request-ID"); id != "" {
		return spine.WithCorrelationID(ctx, id)
	}
	return ctx
}

// policyRequest is who asks, in the policy's terms.
func policyRequest(a *engine.Access) policy.Request {
	return policy.Request{Agency: policy.Agency{ID: a.AgencyID, Kind: a.AgencyKind, ODS: a.AgencyODS},
		ClientID: a.ClientID, Purpose: a.Purpose, BreakGlass: a.BreakGlass}
}

// auditSpineFailure records a failed Spine exchange with the Spine's own code, so the trail
// keeps what the Spine said when the client only sees the normalised outcome.
func (sp *spineParts) auditSpineFailure(ctx context.Context, req *engine.Request, patient string, err error) {
	var se *spine.Error
	if !errors.As(err, &se) || sp.node.recorder == nil {
		return
	}
	ev := audit.Event{Action: audit.ActionSearch, Outcome: audit.OutcomeError, Status: se.Status, Detail: se.AuditDetail(),
		RequestID: req.Header.Get("X-Request-ID")}
	if a := req.Access; a != nil {
		ev.ClientID, ev.AgencyID, ev.AgencyODS, ev.Purpose, ev.BreakGlassReason = a.ClientID, a.AgencyID, a.AgencyODS, a.Purpose, a.BreakGlass
	}
	if patient != "" {
		ev.Patients = []string{patient}
	}
	// Written before the answer leaves, so the Spine's code is in the trail when the client looks.
	sp.node.recorder.RecordWait(context.WithoutCancel(ctx), ev) //nolint:errcheck // a failed audit write is logged by the recorder
}

// currentPatient reads a stored Patient as JSON.
func currentPatient(ctx context.Context, st store.Store, id string) (map[string]any, error) {
	r, err := st.Current(ctx, "Patient", id)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.Deleted {
		return nil, outcome.New(http.StatusNotFound, "not-found", "Patient/%s is not known", id)
	}
	if err != nil {
		return nil, err
	}
	return resource.Decode(r.Body, resource.Limits{})
}

// nhsNumberOf returns a Patient's NHS number.
func nhsNumberOf(p map[string]any) string {
	ids, _ := p["identifier"].([]any)
	for _, x := range ids {
		if m, _ := x.(map[string]any); m["system"] == spine.SystemNHSNumber {
			v, _ := m["value"].(string)
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func decodeJSON(b []byte) (map[string]any, error) { return resource.Decode(b, resource.Limits{}) }
