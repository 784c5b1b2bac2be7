package report

import (
	"html/template"
	"io"

	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// htmlPage is self-contained: no scripts, fonts or styles from elsewhere. html/template
// escapes everything the server under test sent.
var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"headers": headerText,
	"excerpt": func(b []byte) string { return excerpt(b, 4096) },
	"ms":      func(d interface{ Milliseconds() int64 }) int64 { return d.Milliseconds() },
	"failed": func(s testscript.Status) bool {
		return s == testscript.Fail || s == testscript.Errored
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Conformance report: {{.Run.Target}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:80rem}
h1{font-size:1.5rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1.05rem;margin-bottom:.25rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
.pass{color:#1a7f37}.fail,.error{color:#b3261e;font-weight:600}.warning{color:#9a6700}
.banner{padding:.75rem 1rem;border-radius:4px;font-weight:600}
.banner.ok{background:#dafbe1}.banner.bad{background:#ffebe9}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:24rem;white-space:pre-wrap;word-break:break-all}
.failure{border-left:4px solid #b3261e;padding-left:1rem;margin:.5rem 0 1rem}
code{background:#f6f8fa;padding:0 .2rem}
</style>
</head>
<body>
<h1>Conformance report</h1>
<p>Target <code>{{.Run.Target}}</code>, started {{.Summary.Started.Format "2006-01-02 15:04:05 UTC"}}, {{.Summary.DurationMS}} ms.</p>
{{with .Summary.Totals}}
<p class="banner {{if $.Summary.Passed}}ok{{else}}bad{{end}}">{{if $.Summary.Passed}}All {{.Tests}} tests passed{{else}}{{.Failed}} failed, {{.Errors}} errors, {{.Passed}} passed of {{.Tests}} tests{{end}}
({{.Suites}} suites, {{.Scripts}} scripts{{if .InvalidScripts}}, {{.InvalidScripts}} invalid{{end}}{{if .Warnings}}, {{.Warnings}} warnings{{end}}).</p>
{{end}}
{{range .Run.Suites}}
<h2>Suite {{.Suite}}</h2>
<p>{{.Description}}</p>
{{range .Scripts}}
<h3>{{if .Title}}{{.Title}}{{else}}{{.Name}}{{end}} <small>({{.File}})</small></h3>
{{if .Invalid}}
<div class="failure"><p class="error">Invalid TestScript: nothing was run.</p><ul>{{range .Invalid}}<li><code>{{.Path}}</code>: {{.Message}}</li>{{end}}</ul></div>
{{else}}
<table>
<tr><th>test</th><th>result</th><th>ms</th><th></th></tr>
{{range .Tests}}<tr><td>{{.Name}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{ms .Duration}}</td><td>{{.Description}}</td></tr>
{{end}}</table>
{{range .Setup}}{{if failed .Status}}<div class="failure"><p class="fail">Setup failed at <code>{{.Path}}</code> ({{.Label}}): {{.Message}}</p></div>{{end}}{{end}}
{{range .Tests}}{{if failed .Status}}
<div class="failure">
<p class="fail">{{.Name}}: {{.Status}}</p>
<p>{{.Message}}</p>
{{range .Actions}}{{if failed .Status}}
<table>
<tr><th>action</th><td><code>{{.Path}}</code> {{.Label}}</td></tr>
<tr><th>message</th><td>{{.Message}}</td></tr>
{{if .Expected}}<tr><th>expected</th><td>{{.Expected}}</td></tr>{{end}}
{{if .Actual}}<tr><th>actual</th><td>{{.Actual}}</td></tr>{{end}}
</table>
{{with .Exchange}}
<p>Request</p>
<pre>{{.Method}} {{.URL}}
{{headers .RequestHeader}}{{if .RequestBody}}
{{excerpt .RequestBody}}{{end}}</pre>
<p>Response</p>
<pre>{{if .Err}}{{.Err}}{{else}}{{.Status}}
{{headers .ResponseHeader}}
{{excerpt .ResponseBody}}{{end}}</pre>
{{end}}
{{end}}{{end}}
</div>
{{end}}{{end}}
{{range .Tests}}{{range .Actions}}{{if eq .Status "warning"}}<p class="warning">Warning at <code>{{.Path}}</code> ({{.Label}}): {{.Message}}</p>{{end}}{{end}}{{end}}
{{range .Teardown}}{{if ne .Status "pass"}}<p class="warning">Teardown <code>{{.Path}}</code> ({{.Label}}): {{.Message}}</p>{{end}}{{end}}
{{end}}
{{end}}
{{end}}
</body>
</html>
`))

// WriteHTML writes a self-contained HTML report: totals, every test's result, and for each
// failure the action, expected and actual values and the request and response excerpts
// (credentials redacted).
func WriteHTML(w io.Writer, r *Run) error {
	return htmlPage.Execute(w, struct {
		Run     *Run
		Summary Summary
	}{r, Summarize(r)})
}
