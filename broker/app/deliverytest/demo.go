package deliverytest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/hjbroker/hjbroker/broker/config"
)

// DemoConfig writes the built-in demo configuration with the endpoints named in urls
// (endpoint id → URL, e.g. "court-fhir" → a sink's FHIRBase) pointed there, and returns
// the file's path. The other endpoints keep their demo URLs. It fails the test when an id
// is not an endpoint of the demo configuration, so a renamed endpoint cannot leave a test
// delivering nowhere.
func DemoConfig(t testing.TB, urls map[string]string) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(config.DemoYAML(), &cfg); err != nil {
		t.Fatalf("reading the demo configuration: %v", err)
	}
	set := map[string]bool{}
	agencies, _ := cfg["agencies"].([]any)
	for _, a := range agencies {
		a, _ := a.(map[string]any)
		eps, _ := a["endpoints"].([]any)
		for _, e := range eps {
			ep, _ := e.(map[string]any)
			id, _ := ep["id"].(string)
			if u, ok := urls[id]; ok {
				ep["url"] = u
				set[id] = true
			}
		}
	}
	var missing []string
	for id := range urls {
		if !set[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("the demo configuration has no endpoint %v", missing)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("writing the demo configuration: %v", err)
	}
	path := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
