package httpapi

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
)

// adminPrefix is where Config.Admin is served.
const adminPrefix = "/admin"

// admin serves Config.Admin to the service's operators only: clients of an agency of kind
// broker. Every request is audited like a FHIR one.
func (s *server) admin(c *gin.Context) {
	sec := s.cfg.Security
	h := c.GetHeader("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		s.unauthenticated(c, &auth.TokenError{Code: "invalid_request", Description: "the admin API needs an operator's Bearer token"})
		return
	}
	p, err := sec.Auth.Verify(c.Request.Context(), strings.TrimSpace(tok))
	if err != nil {
		s.unauthenticated(c, err)
		return
	}
	acc := &engine.Access{ClientID: p.ClientID, AgencyID: p.AgencyID, AgencyKind: p.AgencyKind, Scopes: p.Scopes}
	if sec.Agencies != nil {
		acc.AgencyODS = sec.Agencies(p.AgencyID)
	}
	if len(p.Purposes) > 0 {
		acc.Purpose = p.Purposes[0]
	}
	c.Set("client_id", p.ClientID)
	if p.AgencyKind != config.KindBroker {
		s.forbidden(c, acc, "the admin API is for the service's operators (agency kind %q), not %s", config.KindBroker, p.AgencyKind)
		return
	}
	http.StripPrefix(adminPrefix, s.cfg.Admin).ServeHTTP(c.Writer, c.Request)
	s.record(c, acc, &engine.Response{Status: c.Writer.Status(), Interaction: "admin"})
}
