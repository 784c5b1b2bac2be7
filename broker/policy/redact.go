package policy

// Restricted (R) and very restricted (V) patients keep their location private, as the PDS
// does for sensitive records: their address, telephone and registered GP never leave.

// RedactedCode is the v3-ObservationValue code in meta.security marking a redacted copy.
const RedactedCode = "REDACTED"

// Restricted reports whether a resource carries confidentiality R or V.
func Restricted(res map[string]any) bool {
	labels := codings(obj(res["meta"])["security"])
	return hasCode(labels, SystemConfidentiality, "R") || hasCode(labels, SystemConfidentiality, "V")
}

// Redact returns a copy of a restricted (R or V) Patient without address, telecom,
// generalPractitioner, the contacts' addresses and telecoms, and the narrative (which may
// repeat them), labelled REDACTED; the bool is true. Any other resource is returned as it is
// with false. The input is never modified.
func Redact(patient map[string]any) (map[string]any, bool) {
	if str(patient, "resourceType") != "Patient" || !Restricted(patient) {
		return patient, false
	}
	out := clone(patient).(map[string]any)
	for _, k := range []string{"address", "telecom", "generalPractitioner", "text"} {
		delete(out, k)
	}
	for _, c := range list(out["contact"]) {
		if cm := obj(c); cm != nil {
			delete(cm, "address")
			delete(cm, "telecom")
		}
	}
	meta := obj(out["meta"])
	sec := list(meta["security"])
	if meta == nil {
		meta = map[string]any{}
		out["meta"] = meta
	}
	if !hasCode(codings(sec), SystemObservationValue, RedactedCode) {
		meta["security"] = append(sec, map[string]any{"system": SystemObservationValue, "code": RedactedCode, "display": "redacted"})
	}
	return out, true
}

// redactAll redacts a restricted Patient, or restricted Patients contained in a resource or
// carried in a Bundle, returning a copy when anything changed.
func redactAll(res map[string]any) (map[string]any, bool) {
	if out, ok := Redact(res); ok {
		return out, true
	}
	var out map[string]any
	replace := func(key string, i int, inner func(any) any) {
		if out == nil {
			out = clone(res).(map[string]any)
		}
		l := list(out[key])
		l[i] = inner(l[i])
		out[key] = l
	}
	for i, c := range list(res["contained"]) {
		if r, ok := redactAll(obj(c)); ok {
			replace("contained", i, func(any) any { return r })
		}
	}
	for i, e := range list(res["entry"]) {
		if r, ok := redactAll(obj(obj(e)["resource"])); ok {
			replace("entry", i, func(v any) any {
				obj(v)["resource"] = r
				return v
			})
		}
	}
	if out == nil {
		return res, false
	}
	return out, true
}
