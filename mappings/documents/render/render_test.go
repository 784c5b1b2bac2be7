package render_test

import (
	"bytes"
	"compress/zlib"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/mappings/documents/render"
	"github.com/hjbroker/hjbroker/mappings/mappingtest"
)

// docs are the golden documents of the documents package.
var docs = []string{"court-consented", "court-draft-restricted", "handback-episode", "handback-minimal"}

func load(t *testing.T, name string) map[string]any {
	t.Helper()
	return mappingtest.ReadJSON(t, filepath.Join("..", "testdata", name+".expected.json"))
}

func TestHTMLGolden(t *testing.T) {
	for _, name := range docs {
		t.Run(name, func(t *testing.T) {
			got, err := render.HTML(load(t, name))
			if err != nil {
				t.Fatal(err)
			}
			mappingtest.Golden(t, filepath.Join("testdata", name+".html"), got)
		})
	}
}

func TestHTMLIsSelfContainedAndEscaped(t *testing.T) {
	doc := load(t, "court-consented")
	// A hostile narrative and title: markup must come out as text, never as markup.
	comp := doc["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	comp["title"] = `Report <script>alert(1)</script>`
	sec := comp["section"].([]any)[1].(map[string]any)
	sec["text"].(map[string]any)["div"] = `<div xmlns="http://www.w3.org/1999/xhtml"><p>Tom &amp; Jerry &lt;img src=x onerror=alert(1)&gt;</p></div>`
	got, err := render.HTML(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, bad := range []string{"<script", "<img", "src=\"http", "<link", "@import"} {
		if strings.Contains(s, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	for _, want := range []string{"Report &lt;script&gt;", "Tom &amp; Jerry &lt;img src=x onerror=alert(1)&gt;", "Jane Anne SMITH", "NHS number 900 000 0009",
		"Divert: refer the person", "<style>"} {
		if !strings.Contains(s, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestDraftIsMarked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		draft bool
	}{{"court-consented", false}, {"court-draft-restricted", true}} {
		got, err := render.HTML(load(t, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(got), "not sent to its recipient") != tc.draft {
			t.Errorf("%s: draft banner shown = %v, want %v", tc.name, !tc.draft, tc.draft)
		}
		pdf, err := render.PDF(load(t, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(pdfText(t, pdf), "DRAFT (preliminary)") != tc.draft {
			t.Errorf("%s: PDF draft banner wrong, want %v", tc.name, tc.draft)
		}
	}
}

var streamRE = regexp.MustCompile(`(?s)<<([^>]*?)>>\s*stream\r?\n(.*?)\r?\nendstream`)

// pdfText checks the PDF's basic structure (header, cross-reference table, trailer, end
// marker) and returns the text of its content streams, inflated where compressed.
func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.")) {
		t.Fatalf("does not start with %%PDF-1.: %q", pdf[:min(16, len(pdf))])
	}
	for _, part := range []string{"\nxref\n", "\ntrailer\n", "startxref", "/Type /Catalog", "/Type /Page"} {
		if !bytes.Contains(pdf, []byte(part)) {
			t.Errorf("the PDF lacks %q", part)
		}
	}
	if !bytes.HasSuffix(bytes.TrimSpace(pdf), []byte("%%EOF")) {
		t.Error("the PDF does not end with the EOF marker")
	}
	var text strings.Builder
	for _, m := range streamRE.FindAllSubmatch(pdf, -1) {
		body := m[2]
		if bytes.Contains(m[1], []byte("/FlateDecode")) {
			r, err := zlib.NewReader(bytes.NewReader(body))
			if err != nil {
				continue // a font or image stream
			}
			body, err = io.ReadAll(r)
			if err != nil {
				continue
			}
		}
		text.Write(body)
	}
	// Text is written as PDF strings: undo their escapes.
	return strings.NewReplacer(`\(`, "(", `\)`, ")", `\\`, `\`).Replace(text.String())
}

func TestPDF(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"court-consented", []string{"Liaison and diversion report to the court", "Jane Anne SMITH", "900 000 0009",
			"Divert: refer the person", "At risk of deliberate self harm", "Referral to psychiatry service", "Magistrates' Court"}},
		{"handback-episode", []string{"Custody healthcare hand-back to the GP", "Jane SMITH", "Penicillin: Rash", "Sertraline 50mg tablets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pdf, err := render.PDF(load(t, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			text := pdfText(t, pdf)
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("the PDF does not show %q", w)
				}
			}
			again, _ := render.PDF(load(t, tc.name))
			if !bytes.Equal(pdf, again) {
				t.Error("the same document gave different PDF bytes")
			}
			if dir := os.Getenv("HJB_RENDER_OUT"); dir != "" {
				os.WriteFile(filepath.Join(dir, tc.name+".pdf"), pdf, 0o644) //nolint:errcheck // for looking at by eye
			}
		})
	}
}

func TestReadRejectsNonDocuments(t *testing.T) {
	for _, b := range []map[string]any{
		{"resourceType": "Patient"},
		{"resourceType": "Bundle", "type": "collection"},
		{"resourceType": "Bundle", "type": "document"},
		{"resourceType": "Bundle", "type": "document", "entry": []any{map[string]any{"resource": map[string]any{"resourceType": "Patient"}}}},
	} {
		if _, err := render.HTML(b); err == nil {
			t.Errorf("HTML of %v: no error", b)
		}
		if _, err := render.PDF(b); err == nil {
			t.Errorf("PDF of %v: no error", b)
		}
	}
}
