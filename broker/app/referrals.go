package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/referral"
	"github.com/hjbroker/hjbroker/mappings/ld"
)

// EventReferralRequest is the BaRS message event of a referral (message-events-bars).
const EventReferralRequest = "servicerequest-request"

// referralEntries completes the transaction entries (tx, built in order from the message's
// entries after the MessageHeader, skipping those without a resource) of a BaRS referral
// message ($process-message, event servicerequest-request):
//   - a Patient without id that carries an NHS number is created only if no Patient has that
//     number (a conditional create), so repeated referrals do not duplicate the person;
//   - each active ServiceRequest that no Task in the message has as its focus gets one,
//     asking the ServiceRequest's performer (owner) to fulfil it for the requester. A
//     ServiceRequest entry without fullUrl or id gets a urn:uuid fullUrl for its Task to
//     point at. One whose performer names no organisation the broker can resolve is a 422
//     naming its performer.
func referralEntries(ctx context.Context, n *Node, event string, entries, tx []any, a *engine.Access) ([]any, error) {
	if event != EventReferralRequest {
		return tx, nil
	}
	byURL := map[string]map[string]any{}
	focused := map[string]bool{}
	// at maps each tx entry to the message entry it came from.
	var at []int
	for i := 1; i < len(entries); i++ {
		res, full := entryResource(entries, i)
		if res == nil {
			continue
		}
		at = append(at, i)
		if full != "" {
			byURL[full] = res
		}
		if str(res, "resourceType") == "Task" {
			focused[str(obj(res["focus"]), "reference")] = true
		}
	}
	if len(at) != len(tx) {
		return nil, fmt.Errorf("referral message: %d transaction entries for %d message entries", len(tx), len(at))
	}
	out := tx
	for k, raw := range tx {
		en := obj(raw)
		res := obj(en["resource"])
		switch str(res, "resourceType") {
		case "Patient":
			if nhs := nhsNumber(res); nhs != "" && str(res, "id") == "" {
				en["request"] = map[string]any{"method": http.MethodPost, "url": "Patient", "ifNoneExist": "identifier=" + systemNHSNumber + "|" + nhs}
			}
			continue
		case "ServiceRequest":
		default:
			continue
		}
		if str(res, "status") != "active" {
			continue
		}
		id, ref := str(res, "id"), str(en, "fullUrl")
		if (id != "" && focused["ServiceRequest/"+id]) || (ref != "" && focused[ref]) {
			continue
		}
		switch {
		case ref != "":
		case id != "":
			ref = "ServiceRequest/" + id
		default:
			ref = "urn:uuid:" + uuid.NewString()
			en["fullUrl"] = ref
		}
		owner, err := referralOwner(ctx, n, res, byURL)
		if err != nil {
			return nil, err
		}
		if owner.ODS == "" && owner.Ref == "" {
			return nil, outcome.At(http.StatusUnprocessableEntity, "required", fmt.Sprintf("Bundle.entry[%d].resource.performer", at[k]),
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

const systemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"

func nhsNumber(patient map[string]any) string {
	for _, id := range list(patient["identifier"]) {
		if str(obj(id), "system") == systemNHSNumber {
			return str(obj(id), "value")
		}
	}
	return ""
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

// checkReferralTask applies the referral Task workflow to a write by a (nil: the broker).
func checkReferralTask(a *engine.Access, prev, next map[string]any) error {
	var actor *referral.Actor
	if a != nil && a.AgencyKind != config.KindBroker {
		actor = &referral.Actor{ODS: a.AgencyODS}
	}
	return referral.CheckTask(actor, prev, next)
}

// referralConsequences closes a referral's ServiceRequest when its Task ends
// (referral.Closes), as the broker's own change in the Task's transaction.
func referralConsequences(prev, next map[string]any) []engine.Consequence {
	c, ok := referral.Closes(prev, next)
	if !ok {
		return nil
	}
	return []engine.Consequence{{
		Type: "ServiceRequest", ID: c.ServiceRequest, Change: c.Apply,
		Reason: fmt.Sprintf("referral Task/%s moved to %s, so its ServiceRequest is %s", str(next, "id"), c.TaskStatus, c.Status),
	}}
}
