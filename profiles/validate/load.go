package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
)

// Data is profile data as loaded from files.
type Data struct {
	Profiles     []Profile
	ValueSets    []ValueSet
	Verification *Verification
}

// LoadFS reads profile data laid out as profiles/*.json (each a Profile), valuesets/*.json
// (each a ValueSet) and, when present, nhs-number-verification.json. Unknown fields are
// errors, so that a misspelt rule cannot be silently ignored.
func LoadFS(fsys fs.FS) (*Data, error) {
	d := &Data{}
	for _, dir := range []string{"profiles", "valuesets"} {
		names, err := fs.Glob(fsys, dir+"/*.json")
		if err != nil {
			return nil, err
		}
		sort.Strings(names)
		for _, n := range names {
			b, err := fs.ReadFile(fsys, n)
			if err != nil {
				return nil, err
			}
			if dir == "profiles" {
				var p Profile
				if err := decodeStrict(b, &p); err != nil {
					return nil, fmt.Errorf("validate: %s: %w", n, err)
				}
				d.Profiles = append(d.Profiles, p)
			} else {
				var vs ValueSet
				if err := decodeStrict(b, &vs); err != nil {
					return nil, fmt.Errorf("validate: %s: %w", n, err)
				}
				d.ValueSets = append(d.ValueSets, vs)
			}
		}
	}
	b, err := fs.ReadFile(fsys, path.Clean("nhs-number-verification.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		var vf Verification
		if err := decodeStrict(b, &vf); err != nil {
			return nil, fmt.Errorf("validate: nhs-number-verification.json: %w", err)
		}
		d.Verification = &vf
	}
	return d, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
