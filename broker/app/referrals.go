package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/ld"
)

// EventReferralRequest is the BaRS message event of a referral (message-events-bars).
const EventReferralRequest = "servicerequest-request"

// referralTasks returns the Tasks a BaRS referral message ($process-message, event
// servicerequest-request) needs: one for each active ServiceRequest in it that no Task in
// the message already has as its focus, asking the ServiceRequest's performer (owner) to
// fulfil it for the requester. A ServiceRequest entry without fullUrl or id gets a urn:uuid
// fullUrl so that its Task can point at it. A ServiceRequest whose performer names no
// organisation the broker can resolve is a 422 naming its performer.
func referralTasks(ctx context.Context, n *Node, event string, entries []any, a *engine.Access) ([]any, error) {
	if event != EventReferralRequest {
		return nil, nil
	}
	byURL := map[string]map[string]any{}
	focused := map[string]bool{}
	for i := 1; i < len(entries); i++ {
		res, full := entryResource(entries, i)
		if full != "" {
			byURL[full] = res
		}
		if str(res, "resourceType") == "Task" {
			focused[str(obj(res["focus"]), "reference")] = true
		}
	}
	var out []any
	for i := 1; i < len(entries); i++ {
		res, full := entryResource(entries, i)
		if str(res, "resourceType") != "ServiceRequest" || str(res, "status") != "active" {
			continue
		}
		ref := full
		if id := str(res, "id"); id != "" && focused["ServiceRequest/"+id] {
			continue
		} else if ref == "" && id != "" {
			ref = "ServiceRequest/" + id
		}
		if focused[ref] && ref != "" {
			continue
		}
		if ref == "" {
			ref = "urn:uuid:" + uuid.NewString()
			obj(entries[i])["fullUrl"] = ref
		}
		at := fmt.Sprintf("Bundle.entry[%d].resource", i)
		owner, err := referralOwner(ctx, n, res, byURL)
		if err != nil {
			return nil, err
		}
		if owner.ODS == "" && owner.Ref == "" {
			return nil, outcome.At(http.StatusUnprocessableEntity, "required", at+".performer",
				"a referral's ServiceRequest must name the organisation asked to fulfil it (performer: an Organization with its ODS code, or a HealthcareService in the directory)")
		}
		requester := partyOf(obj(res["requester"]))
		if requester.ODS == "" && requester.Ref == "" && a != nil {
			if ag, ok := n.Config.Agency(a.AgencyID); ok {
				requester = ld.Party{ODS: ag.ODS, Name: ag.Name}
			}
		}
		authored := str(res, "authoredOn")
		if authored == "" {
			authored = time.Now().UTC().Format(time.RFC3339)
		}
		task := ld.ReferralTask(ref, str(obj(res["subject"]), "reference"), authored, requester, owner)
		out = append(out, map[string]any{"fullUrl": "urn:uuid:" + uuid.NewString(), "resource": task,
			"request": map[string]any{"method": http.MethodPost, "url": "Task"}})
	}
	return out, nil
}

// partyOf reads a Reference to an organisation.
func partyOf(r map[string]any) ld.Party {
	p := ld.Party{Name: str(r, "display")}
	if ref := str(r, "reference"); strings.HasPrefix(ref, "Organization/") {
		p.Ref = ref
	}
	if id := obj(r["identifier"]); str(id, "system") == ld.SystemODS {
		p.ODS = str(id, "value")
	}
	return p
}

// referralOwner finds the organisation a ServiceRequest's performer names: an ODS
// identifier on the reference, an Organization or a directory HealthcareService in the
// store, or one of either carried in the message.
func referralOwner(ctx context.Context, n *Node, sr map[string]any, byURL map[string]map[string]any) (ld.Party, error) {
	for _, p := range list(sr["performer"]) {
		pr := obj(p)
		if party := partyOf(pr); party.ODS != "" {
			return party, nil
		}
		ref := str(pr, "reference")
		res := byURL[ref]
		typ, id, _ := strings.Cut(ref, "/")
		if res == nil && (typ == "Organization" || typ == "HealthcareService") && id != "" {
			var err error
			if res, err = readCurrent(ctx, n.Store, typ, id); err != nil {
				return ld.Party{}, err
			}
		}
		switch str(res, "resourceType") {
		case "Organization":
			return ld.ServiceFrom(map[string]any{}, res).Provider, nil
		case "HealthcareService":
			pb := obj(res["providedBy"])
			if org := byURL[str(pb, "reference")]; org != nil {
				return ld.ServiceFrom(res, org).Provider, nil
			}
			if t, oid, ok := strings.Cut(str(pb, "reference"), "/"); ok && t == "Organization" {
				org, err := readCurrent(ctx, n.Store, t, oid)
				if err != nil {
					return ld.Party{}, err
				}
				return ld.ServiceFrom(res, org).Provider, nil
			}
			return ld.ServiceFrom(res, nil).Provider, nil
		}
	}
	return ld.Party{}, nil
}
