package render

import (
	"bytes"
	"fmt"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
)

// PDF renders the document as an A4 PDF. The core Helvetica font covers Windows-1252, so
// characters outside it (rare in English names) print as "?". Creation and modification
// dates are the document's own, so the same document gives the same bytes.
func PDF(bundle map[string]any) ([]byte, error) {
	d, err := Read(bundle)
	if err != nil {
		return nil, err
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	tr := pdf.UnicodeTranslatorFromDescriptor("")
	pdf.SetTitle(d.Title, true)
	pdf.SetAuthor(d.Author, true)
	pdf.SetSubject(d.Type, true)
	pdf.SetCreator("hjbroker", true)
	pdf.SetCatalogSort(true) // fonts in a fixed order: the same document, the same bytes
	if t, err := time.Parse(time.RFC3339, dateOf(bundle)); err == nil {
		pdf.SetCreationDate(t)
		pdf.SetModificationDate(t)
	}
	pdf.SetMargins(18, 18, 18)
	pdf.SetAutoPageBreak(true, 18)
	pdf.SetFooterFunc(func() {
		pdf.SetY(-13)
		pdf.SetFont("Helvetica", "I", 8)
		pdf.SetTextColor(76, 98, 114)
		pdf.CellFormat(0, 5, tr(fmt.Sprintf("Confidential health information. %s. Page %d of {nb}", d.Identifier, pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AliasNbPages("")
	pdf.AddPage()
	w, _ := pdf.GetPageSize()
	lm, _, rm, _ := pdf.GetMargins()
	width := w - lm - rm

	pdf.SetTextColor(33, 43, 50)
	pdf.SetFont("Helvetica", "B", 16)
	pdf.MultiCell(width, 7, tr(d.Title), "", "L", false)
	pdf.Ln(1)
	if d.Draft() {
		pdf.SetFillColor(255, 244, 204)
		pdf.SetFont("Helvetica", "B", 11)
		pdf.MultiCell(width, 7, tr("DRAFT ("+d.Status+"): not sent to its recipient."), "1", "L", true)
		pdf.Ln(2)
	}
	pdf.SetFont("Helvetica", "", 10)
	pdf.SetTextColor(76, 98, 114)
	pdf.MultiCell(width, 5, tr(d.Type+" - "+d.Status+" - "+d.Date), "", "L", false)
	if d.Author != "" {
		pdf.MultiCell(width, 5, tr("From "+d.Author), "", "L", false)
	}
	pdf.Ln(2)
	pdf.SetTextColor(33, 43, 50)
	pdf.SetFillColor(240, 244, 245)
	pdf.SetFont("Helvetica", "B", 11)
	person := d.Subject
	if d.NHSNumber != "" {
		person += "   NHS number " + nhsnumber.Format(d.NHSNumber)
	}
	if d.BirthDate != "" {
		person += "   born " + d.BirthDate
	}
	pdf.MultiCell(width, 7, tr(person), "", "L", true)
	for _, s := range d.Sections {
		pdf.Ln(4)
		pdf.SetFont("Helvetica", "B", 12)
		pdf.SetTextColor(0, 94, 184)
		pdf.MultiCell(width, 6, tr(s.Title), "B", "L", false)
		pdf.Ln(1)
		pdf.SetTextColor(33, 43, 50)
		pdf.SetFont("Helvetica", "", 10)
		for _, b := range s.Blocks {
			if b.Item {
				x := pdf.GetX()
				pdf.CellFormat(5, 5, tr("-"), "", 0, "L", false, 0, "")
				pdf.MultiCell(width-5, 5, tr(b.Text), "", "L", false)
				pdf.SetX(x)
				continue
			}
			pdf.MultiCell(width, 5, tr(b.Text), "", "L", false)
			pdf.Ln(1)
		}
	}
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("writing the PDF: %w", err)
	}
	return buf.Bytes(), nil
}

func dateOf(bundle map[string]any) string {
	entries := list(bundle["entry"])
	if len(entries) == 0 {
		return ""
	}
	return str(obj(obj(entries[0])["resource"]), "date")
}
