// Package render turns a FHIR document Bundle (Composition first) into something a person
// reads: a self-contained HTML page or a PDF. It renders only what the document holds (the
// Composition's header and its sections' narrative, re-escaped, never passed through), so a
// rendering discloses nothing the document itself does not.
package render

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/mappings/documents"
	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
)

// Doc is a document Bundle read for rendering.
type Doc struct {
	Title      string
	Type       string
	Status     string
	Date       string
	Author     string
	Subject    string // name
	NHSNumber  string
	BirthDate  string
	Identifier string
	Sections   []Section
}

// Section is one rendered section: its title and narrative blocks.
type Section struct {
	Title  string
	Blocks []Block
}

// Block is a paragraph or a list item of a section's narrative.
type Block struct {
	Item bool // a list item (bullet) rather than a paragraph
	Text string
}

// Draft reports whether the document is not final (a preliminary court report is a draft
// that is not sent).
func (d Doc) Draft() bool { return d.Status != "final" && d.Status != "amended" }

// Read extracts what is rendered from a document Bundle.
func Read(bundle map[string]any) (Doc, error) {
	if str(bundle, "resourceType") != "Bundle" || str(bundle, "type") != "document" {
		return Doc{}, errors.New("not a document Bundle")
	}
	entries := list(bundle["entry"])
	if len(entries) == 0 {
		return Doc{}, errors.New("the document Bundle has no entries")
	}
	comp := obj(obj(entries[0])["resource"])
	if str(comp, "resourceType") != "Composition" {
		return Doc{}, errors.New("the first entry of a document must be its Composition")
	}
	d := Doc{
		Title:      str(comp, "title"),
		Type:       documents.ConceptText(comp["type"]),
		Status:     str(comp, "status"),
		Date:       humanDate(str(comp, "date")),
		Subject:    str(obj(comp["subject"]), "display"),
		Identifier: str(obj(bundle["identifier"]), "value"),
	}
	var authors []string
	for _, a := range list(comp["author"]) {
		if s := str(obj(a), "display"); s != "" {
			authors = append(authors, s)
		}
	}
	d.Author = strings.Join(authors, ", ")
	subj := str(obj(comp["subject"]), "reference")
	for _, e := range entries[1:] {
		r := obj(obj(e)["resource"])
		if str(r, "resourceType") != "Patient" || !strings.HasSuffix(subj, "Patient/"+str(r, "id")) {
			continue
		}
		for _, id := range list(r["identifier"]) {
			if str(obj(id), "system") == nhsnumber.System {
				d.NHSNumber = str(obj(id), "value")
			}
		}
		d.BirthDate = str(r, "birthDate")
	}
	for i, s := range list(comp["section"]) {
		sec := Section{Title: str(obj(s), "title")}
		blocks, err := narrative(str(obj(obj(s)["text"]), "div"))
		if err != nil {
			return Doc{}, fmt.Errorf("Composition.section[%d].text.div: %w", i, err)
		}
		sec.Blocks = blocks
		d.Sections = append(d.Sections, sec)
	}
	return d, nil
}

// narrative reads the text of an XHTML narrative as paragraphs and list items. Markup other
// than block boundaries is dropped; only text is kept.
func narrative(div string) ([]Block, error) {
	if strings.TrimSpace(div) == "" {
		return nil, nil
	}
	dec := xml.NewDecoder(strings.NewReader(div))
	var out []Block
	var cur strings.Builder
	item := false
	flush := func() {
		if t := strings.Join(strings.Fields(cur.String()), " "); t != "" {
			out = append(out, Block{Item: item, Text: t})
		}
		cur.Reset()
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "p", "li", "div", "br", "tr", "h1", "h2", "h3", "h4":
				flush()
				item = t.Name.Local == "li"
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "p", "li", "div", "tr", "h1", "h2", "h3", "h4":
				flush()
				item = false
			}
		case xml.CharData:
			cur.Write(t)
			cur.WriteByte(' ')
		}
	}
	flush()
	return out, nil
}

func humanDate(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
