package render

import (
	"bytes"
	"html/template"

	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
)

// page is the HTML page: one file, its style inline, no scripts and nothing fetched.
// html/template escapes every value.
var page = template.Must(template.New("doc").Parse(`<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
body{font-family:Arial,Helvetica,sans-serif;color:#212b32;max-width:50em;margin:2em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.15em;border-bottom:2px solid #005eb8;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#4c6272;margin:.2em 0}
.person{background:#f0f4f5;padding:.6em 1em;border-left:4px solid #005eb8}
.draft{background:#fff4cc;border:2px solid #ffb81c;padding:.6em 1em;font-weight:bold}
footer{margin-top:2em;color:#4c6272;font-size:.85em}
@media print{body{margin:0}}
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
{{if .Draft}}<p class="draft">Draft ({{.Status}}): not sent to its recipient.</p>{{end}}
<p class="meta">{{.Type}} · {{.Status}} · {{.Date}}</p>
{{if .Author}}<p class="meta">From {{.Author}}</p>{{end}}
<div class="person"><strong>{{.Subject}}</strong>{{if .NHSNumber}} · NHS number {{.NHS}}{{end}}{{if .BirthDate}} · born {{.BirthDate}}{{end}}</div>
</header>
<main>
{{range .Sections}}<section>
<h2>{{.Title}}</h2>
{{range .Lists}}{{if .Items}}<ul>{{range .Items}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>{{.Text}}</p>{{end}}
{{end}}</section>
{{end}}</main>
<footer>Confidential health information, shared for the purpose stated in the document. Document {{.Identifier}}.</footer>
</body>
</html>
`))

type htmlSection struct {
	Title string
	Lists []htmlBlock
}

// htmlBlock is a paragraph (Text) or a run of list items (Items).
type htmlBlock struct {
	Text  string
	Items []string
}

// HTML renders the document as a self-contained HTML page.
func HTML(bundle map[string]any) ([]byte, error) {
	d, err := Read(bundle)
	if err != nil {
		return nil, err
	}
	var secs []htmlSection
	for _, s := range d.Sections {
		hs := htmlSection{Title: s.Title}
		for _, b := range s.Blocks {
			n := len(hs.Lists)
			switch {
			case b.Item && n > 0 && hs.Lists[n-1].Items != nil:
				hs.Lists[n-1].Items = append(hs.Lists[n-1].Items, b.Text)
			case b.Item:
				hs.Lists = append(hs.Lists, htmlBlock{Items: []string{b.Text}})
			default:
				hs.Lists = append(hs.Lists, htmlBlock{Text: b.Text})
			}
		}
		secs = append(secs, hs)
	}
	var buf bytes.Buffer
	err = page.Execute(&buf, struct {
		Doc
		Draft    bool
		NHS      string
		Sections []htmlSection
	}{Doc: d, Draft: d.Draft(), NHS: nhsnumber.Format(d.NHSNumber), Sections: secs})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
