package search

import "fmt"

// FHIR issue type codes used in Error.Code.
const (
	CodeInvalid      = "invalid"       // malformed parameter name, modifier or structure
	CodeValue        = "value"         // a value that does not parse or is out of range
	CodeNotSupported = "not-supported" // a parameter or feature this server does not support
	CodeInformation  = "informational" // warnings only: an adjustment the server made
)

// Error is a search parameter problem. It is returned by Parse and also used for warnings.
type Error struct {
	// Param is the parameter name as written, modifiers and chain included.
	Param string
	// Code is the FHIR issue type (CodeInvalid, CodeValue, CodeNotSupported, ...).
	Code string
	// Msg says what is wrong, for people.
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("search parameter %q: %s", e.Param, e.Msg)
}

func errorf(param, code, format string, args ...any) *Error {
	return &Error{Param: param, Code: code, Msg: fmt.Sprintf(format, args...)}
}
