package opdefs

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestEmbeddedDefinitionsLoad(t *testing.T) {
	defs, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) < 4 {
		t.Fatalf("only %d definitions", len(defs))
	}
}

func TestLoadRejects(t *testing.T) {
	good := `{"resourceType":"OperationDefinition","id":"x","url":"` + DefinitionBase + `x","code":"x","system":true}`
	for _, tc := range []struct{ name, file, body, want string }{
		{"not JSON", "x.json", `{`, "unexpected EOF"},
		{"wrong type", "x.json", `{"resourceType":"Patient"}`, "resourceType"},
		{"id not the file name", "y.json", good, `want "y"`},
		{"url not under the base", "x.json", strings.Replace(good, DefinitionBase, "http://example.org/", 1), "url is"},
		{"code with $", "x.json", strings.Replace(good, `"code":"x"`, `"code":"$x"`, 1), "code"},
		{"no level", "x.json", strings.Replace(good, `"system":true`, `"system":false`, 1), "none of system"},
		{"type without resource", "x.json", strings.Replace(good, `"system":true`, `"type":true`, 1), "resource"},
	} {
		_, err := Load(fstest.MapFS{tc.file: {Data: []byte(tc.body)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
			t.Errorf("%s: error %v, want one naming %s and saying %q", tc.name, err, tc.file, tc.want)
		}
	}
	if defs, err := Load(fstest.MapFS{"x.json": {Data: []byte(good)}}); err != nil || len(defs) != 1 {
		t.Errorf("a good definition: %v %v", defs, err)
	}
}
