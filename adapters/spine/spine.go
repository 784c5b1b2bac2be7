// Package spine is a client for Spine-style national services as published on the NHS API
// platform: the Personal Demographics Service (PDS FHIR, application-restricted: read a
// Patient by NHS number, search for a single match) and the Summary Care Record (SCR FHIR:
// the two-step DocumentReference then Bundle retrieval, and privacy alerts).
//
// Every request carries an X-Request-ID (a UUID, the same on every retry of that request) and
// an X-Correlation-ID, and a bearer token obtained with a signed JWT client assertion
// (private_key_jwt, RS512) that is cached until shortly before it expires. Transient failures
// (408, 429, 5xx, timeouts, broken connections) are retried with exponential backoff,
// honouring Retry-After, a bounded number of times. Every failure is an *Error that carries
// the FHIR OperationOutcome the broker answers with and the original Spine code for audit.
package spine

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Code systems and identifier systems used on the Spine APIs.
const (
	SystemNHSNumber     = "https://fhir.nhs.uk/Id/nhs-number"
	SystemODS           = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemSCRUUID       = "https://fhir.nhs.uk/Id/nhsSCRUUID"
	SystemACSPermission = "https://fhir.nhs.uk/CodeSystem/SCR-ACSPermission"
	SystemAlertType     = "https://fhir.nhs.uk/CodeSystem/SCR-AlertType"
	SystemAlertReason   = "https://fhir.nhs.uk/CodeSystem/SCR-AlertReason"
	SystemSpineASID     = "https://fhir.nhs.uk/Id/nhsSpineASID"
	// SCRDocumentType is the SNOMED CT code of the GP summary document type.
	SCRDocumentType = "196981000000101"
)

// Paths of the services below the platform base URL, as on api.service.nhs.uk.
const (
	PDSPath   = "/personal-demographics/FHIR/R4"
	SCRPath   = "/summary-care-record/FHIR/R4"
	TokenPath = "/oauth2/token"
)

// Config configures a Client. BaseURL, ClientID, KeyID and Key are required.
type Config struct {
	// BaseURL is the API platform base (https://int.api.service.nhs.uk, or a simulator's
	// URL); the services live at PDSPath, SCRPath and TokenPath below it.
	BaseURL string
	// TokenURL overrides BaseURL+TokenPath (it is also the assertion's audience).
	TokenURL string
	// ClientID is the application's API key: the assertion's iss and sub.
	ClientID string
	// KeyID is the kid of the registered public key; Key signs the assertions.
	KeyID string
	Key   *rsa.PrivateKey
	// ODS is the requesting organisation, sent as NHSD-End-User-Organisation-ODS.
	ODS string
	// Timeout bounds each attempt (default 10s); MaxAttempts bounds the attempts of one
	// request (default 3); Backoff is the first retry delay, doubled each time (default
	// 250ms); MaxRetryAfter is the longest Retry-After waited for (default 10s): a longer
	// one ends the retries.
	Timeout       time.Duration
	MaxAttempts   int
	Backoff       time.Duration
	MaxRetryAfter time.Duration
	// HTTP is the transport (default: a client without its own timeout; Timeout applies).
	HTTP *http.Client
	// Clock and NewID are for tests; they default to time.Now and random UUIDs.
	Clock func() time.Time
	NewID func() string
}

// Client talks to PDS and SCR. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu    sync.Mutex
	token string
	until time.Time
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	switch {
	case cfg.BaseURL == "":
		return nil, errors.New("spine: a base URL is required")
	case !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://"):
		return nil, fmt.Errorf("spine: base URL %q is not an http(s) URL", cfg.BaseURL)
	case cfg.ClientID == "":
		return nil, errors.New("spine: a client id (API key) is required")
	case cfg.KeyID == "":
		return nil, errors.New("spine: a key id (kid) is required")
	case cfg.Key == nil:
		return nil, errors.New("spine: a private key is required to sign client assertions")
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = cfg.BaseURL + TokenPath
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 250 * time.Millisecond
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 10 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	return &Client{cfg: cfg}, nil
}
