// Package opdefs holds the OperationDefinition of every operation the broker serves, one
// R4 OperationDefinition JSON file per operation, named <id>.json.
//
// The engine matches a definition to an operation by code, by system/type/instance and by
// resource (a type, or "Resource" for every type), serves each at
// /fhir/OperationDefinition/<id> and names its url in the CapabilityStatement. Adding an
// operation to the broker means adding its file here; a test of broker/app fails while any
// served operation has none.
//
// Conventions: url is DefinitionBase followed by the id; where the broker implements (part
// of) an operation of the specification, base names the specification's definition and
// parameter lists only what the broker really accepts and returns.
package opdefs

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// DefinitionBase starts the canonical URL of every definition here.
const DefinitionBase = "https://hjbroker.dev/fhir/OperationDefinition/"

//go:embed *.json
var files embed.FS

// Load decodes every *.json file of fsys, sorted by file name, and checks what the engine
// relies on: resourceType OperationDefinition, id equal to the file name, url equal to
// DefinitionBase+id, a code, and at least one of system, type or instance.
func Load(fsys fs.FS) ([]map[string]any, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading operation definition %s: %w", name, err)
		}
		var def map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&def); err != nil {
			return nil, fmt.Errorf("operation definition %s: %w", name, err)
		}
		if err := check(def, strings.TrimSuffix(path.Base(name), ".json")); err != nil {
			return nil, fmt.Errorf("operation definition %s: %w", name, err)
		}
		out = append(out, def)
	}
	return out, nil
}

// All loads the embedded definitions.
func All() ([]map[string]any, error) { return Load(files) }

func check(def map[string]any, id string) error {
	if def["resourceType"] != "OperationDefinition" {
		return fmt.Errorf("resourceType is %v, want OperationDefinition", def["resourceType"])
	}
	if def["id"] != id {
		return fmt.Errorf("id is %v, want %q (the file name)", def["id"], id)
	}
	if def["url"] != DefinitionBase+id {
		return fmt.Errorf("url is %v, want %s", def["url"], DefinitionBase+id)
	}
	if c, _ := def["code"].(string); c == "" || strings.HasPrefix(c, "$") {
		return fmt.Errorf("code %v: want the operation's name without $", def["code"])
	}
	if def["system"] != true && def["type"] != true && def["instance"] != true {
		return fmt.Errorf("none of system, type and instance is true")
	}
	if (def["type"] == true || def["instance"] == true) && len(asList(def["resource"])) == 0 {
		return fmt.Errorf("a type or instance operation names the resource types it applies to in resource")
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
