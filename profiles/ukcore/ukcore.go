// Package ukcore holds the UK Core R4 profiles and the value sets their required and
// extensible bindings point to, as data in the validator's compact profile format (the
// Profile and ValueSet types of profiles/validate). The package only embeds the files; the
// validator decodes them, so this package imports nothing from it.
//
// Layout of FS():
//
//	profiles/UKCore-<Name>.json   one validate.Profile each; the file name is the last
//	                              segment of the profile's canonical URL
//	valuesets/<id>.json           one validate.ValueSet each; the file name is the last
//	                              segment of the value set URL (UK Core value sets and the
//	                              few HL7 ones the profiles or base R4 bind to)
//	nhs-number-verification.json  the retired NHS number verification code system and the
//	                              current code each of its codes stands for (see below)
//
// Conventions the data relies on:
//   - Only what UK Core changes is recorded; base R4 cardinalities and invariants are checked
//     from the base specification, not from here. A few base bindings that the UK Core guide
//     lists (Encounter.class, Consent.scope, Consent.category, Consent.provision.purpose) are
//     restated because the base model carries no extensible bindings.
//   - Inside a Slice, an Element with an empty path constrains the slice item itself (its
//     binding or its extensions); other paths are relative to the item ("value").
//   - A Min on a nested path (MedicationStatement.identifier.system) applies to each
//     occurrence of the parent that is present.
//   - Extension rules on a primitive element (Patient.telecom.system, ServiceRequest.priority)
//     describe the extensions in its JSON "_name" sibling.
//   - Pattern on a repeating element applies to each repetition, as in FHIR.
//   - Listed extensions are those UK Core defines; extensions not listed stay allowed.
//   - A value set Include without codes accepts its whole code system. This is used where the
//     definition is a SNOMED CT refset or an is-a filter that cannot be expanded offline; the
//     value set name says so.
//
// nhs-number-verification.json decodes into validate.Verification: the extension URL, the
// current England code system every spelling is normalised to, the systems accepted as they
// are, the retired code system, a map from each retired string code to its current code
// ("01", or "system|code" for the Welsh-only code) and the England displays. PDS sends the
// retired system URI with current two-digit codes; those normalise to the same code.
package ukcore

import (
	"embed"
	"io/fs"
)

//go:embed profiles valuesets *.json
var files embed.FS

// FS returns the embedded profile, value set and mapping files.
func FS() fs.FS { return files }
