package search

import (
	"strings"
	"testing"
	"time"
)

func micros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

func rng(lo, hi string) Range { return Range{Low: micros(lo), High: micros(hi)} }

func TestDateRange(t *testing.T) {
	tests := []struct {
		in   string
		want Range
	}{
		{"2024", rng("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z")},
		{"2024-02", rng("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")},
		{"2024-12", rng("2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z")},
		{"2024-02-29", rng("2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z")},
		{"2024-12-31", rng("2024-12-31T00:00:00Z", "2025-01-01T00:00:00Z")},
		{"2024-03-05T10:30", rng("2024-03-05T10:30:00Z", "2024-03-05T10:31:00Z")},
		{"2024-03-05T10:30Z", rng("2024-03-05T10:30:00Z", "2024-03-05T10:31:00Z")},
		{"2024-03-05T10:30:15Z", rng("2024-03-05T10:30:15Z", "2024-03-05T10:30:16Z")},
		{"2024-03-05T10:30:15", rng("2024-03-05T10:30:15Z", "2024-03-05T10:30:16Z")},
		{"2024-03-05T10:30:15.5Z", rng("2024-03-05T10:30:15.5Z", "2024-03-05T10:30:15.6Z")},
		{"2024-03-05T10:30:15.123Z", rng("2024-03-05T10:30:15.123Z", "2024-03-05T10:30:15.124Z")},
		{"2024-03-05T10:30:15.123456Z", rng("2024-03-05T10:30:15.123456Z", "2024-03-05T10:30:15.123457Z")},
		// Digits past microseconds cannot be indexed; the range stays one microsecond wide.
		{"2024-03-05T10:30:15.1234567Z", rng("2024-03-05T10:30:15.123456Z", "2024-03-05T10:30:15.123457Z")},
		{"2024-03-05T10:30:15+01:00", rng("2024-03-05T09:30:15Z", "2024-03-05T09:30:16Z")},
		{"2024-03-05T10:30:15 01:00", rng("2024-03-05T09:30:15Z", "2024-03-05T09:30:16Z")},
		{"2024-03-05T00:30:00-05:30", rng("2024-03-05T06:00:00Z", "2024-03-05T06:00:01Z")},
		{"2024-01-01T00:30:00+01:00", rng("2023-12-31T23:30:00Z", "2023-12-31T23:30:01Z")},
		{"2024-03-05T10:30:15+14:00", rng("2024-03-04T20:30:15Z", "2024-03-04T20:30:16Z")},
	}
	for _, tt := range tests {
		got, err := DateRange(tt.in)
		if err != nil {
			t.Errorf("DateRange(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("DateRange(%q) = [%s, %s), want [%s, %s)", tt.in,
				time.UnixMicro(got.Low).UTC(), time.UnixMicro(got.High).UTC(),
				time.UnixMicro(tt.want.Low).UTC(), time.UnixMicro(tt.want.High).UTC())
		}
	}
}

func TestDateRangeInvalid(t *testing.T) {
	for _, in := range []string{
		"", "24", "2024-1", "2024-13", "2024-00", "2023-02-29", "2024-04-31", "2024-01-00",
		"0000", "2024-01-01T24:00", "2024-01-01T10:60", "2024-01-01T10:00:60", "2024-01-01T10",
		"2024-01-01T10:00:00+15:00", "2024-01-01T10:00:00+14:30", "2024-01-01T10:00:00+0100",
		"2024-01-01Z", "2024-01-01T10:00:00.Z", "2024/01/01", "20240101", "today",
	} {
		if r, err := DateRange(in); err == nil {
			t.Errorf("DateRange(%q) = %v, want an error", in, r)
		} else if !strings.Contains(err.Error(), "is not a valid date") {
			t.Errorf("DateRange(%q) error %q does not say it is not a valid date", in, err)
		}
	}
}

func TestPeriodRange(t *testing.T) {
	tests := []struct {
		start, end string
		want       Range
		wantErr    bool
	}{
		{"2024-01-01", "2024-01-31", rng("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"), false},
		{"2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", rng("2024-01-01T10:00:00Z", "2024-01-01T11:00:01Z"), false},
		{"2024-01-01", "", Range{Low: micros("2024-01-01T00:00:00Z"), High: OpenHigh}, false},
		{"", "2024", Range{Low: OpenLow, High: micros("2025-01-01T00:00:00Z")}, false},
		{"", "", Range{Low: OpenLow, High: OpenHigh}, false},
		{"2024-02-01", "2024-01-01", Range{}, true},
		{"2024-02-30", "", Range{}, true},
		{"", "nope", Range{}, true},
	}
	for _, tt := range tests {
		got, err := PeriodRange(tt.start, tt.end)
		if (err != nil) != tt.wantErr {
			t.Errorf("PeriodRange(%q, %q) error = %v, wantErr %v", tt.start, tt.end, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("PeriodRange(%q, %q) = %v, want %v", tt.start, tt.end, got, tt.want)
		}
	}
}

// TestDateMatches pins the prefix semantics against indexed values of several precisions,
// including values that straddle or touch the edges of the search range.
func TestDateMatches(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	val := func(s string) Range {
		r, err := DateRange(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	period := func(a, b string) Range {
		r, err := PeriodRange(a, b)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	inside := val("2024-06-15")
	firstSec := val("2024-01-01T00:00:00Z")
	lastSec := val("2024-12-31T23:59:59Z")
	beforeStart := val("2023-12-31T23:59:59Z")
	atEnd := val("2025-01-01T00:00:00Z")
	whole := val("2024")
	straddleLow := period("2023-12-15", "2024-01-15")
	straddleHigh := period("2024-12-15", "2025-01-15")
	covering := period("2023-06-01", "2025-06-01")
	openEnd := period("2024-03-01", "")
	openStart := period("", "2023-05-01")
	localMidnight := val("2024-01-01T00:30:00+01:00") // 2023-12-31T23:30Z

	type c struct {
		r    Range
		want bool
	}
	tests := []struct {
		search string
		cases  map[string]c
	}{
		{"2024", map[string]c{
			"inside": {inside, true}, "firstSec": {firstSec, true}, "lastSec": {lastSec, true},
			"whole": {whole, true}, "beforeStart": {beforeStart, false}, "atEnd": {atEnd, false},
			"straddleLow": {straddleLow, false}, "straddleHigh": {straddleHigh, false},
			"covering": {covering, false}, "openEnd": {openEnd, false}, "localMidnight": {localMidnight, false},
		}},
		{"eq2024", map[string]c{"inside": {inside, true}, "atEnd": {atEnd, false}}},
		{"ne2024", map[string]c{
			"inside": {inside, false}, "whole": {whole, false}, "beforeStart": {beforeStart, true},
			"atEnd": {atEnd, true}, "straddleLow": {straddleLow, true}, "covering": {covering, true},
		}},
		{"gt2024", map[string]c{
			"inside": {inside, false}, "lastSec": {lastSec, false}, "atEnd": {atEnd, true},
			"straddleHigh": {straddleHigh, true}, "straddleLow": {straddleLow, false},
			"covering": {covering, true}, "openEnd": {openEnd, true}, "beforeStart": {beforeStart, false},
		}},
		{"lt2024", map[string]c{
			"inside": {inside, false}, "firstSec": {firstSec, false}, "beforeStart": {beforeStart, true},
			"straddleLow": {straddleLow, true}, "straddleHigh": {straddleHigh, false},
			"covering": {covering, true}, "openStart": {openStart, true}, "localMidnight": {localMidnight, true},
		}},
		{"ge2024", map[string]c{
			"inside": {inside, true}, "firstSec": {firstSec, true}, "atEnd": {atEnd, true},
			"beforeStart": {beforeStart, false}, "straddleLow": {straddleLow, false},
			"straddleHigh": {straddleHigh, true}, "openStart": {openStart, false},
		}},
		{"le2024", map[string]c{
			"inside": {inside, true}, "lastSec": {lastSec, true}, "atEnd": {atEnd, false},
			"beforeStart": {beforeStart, true}, "straddleLow": {straddleLow, true},
			"straddleHigh": {straddleHigh, false}, "openEnd": {openEnd, false},
		}},
		{"sa2024", map[string]c{
			"atEnd": {atEnd, true}, "lastSec": {lastSec, false}, "straddleHigh": {straddleHigh, false},
			"openEnd": {openEnd, false}, "inside": {inside, false},
		}},
		{"eb2024", map[string]c{
			"beforeStart": {beforeStart, true}, "firstSec": {firstSec, false},
			"straddleLow": {straddleLow, false}, "openStart": {openStart, true}, "localMidnight": {localMidnight, true},
		}},
		{"eq2024-01-01", map[string]c{
			"firstSec": {firstSec, true}, "beforeStart": {beforeStart, false},
			"localMidnight": {localMidnight, false}, "whole": {whole, false},
		}},
		{"gt2024-06-15", map[string]c{
			"inside": {inside, false}, "lastSec": {lastSec, true}, "firstSec": {firstSec, false},
		}},
		{"ge2024-06-15T00:00:00Z", map[string]c{
			// A day contains the second but also reaches past it.
			"inside": {inside, true}, "firstSec": {firstSec, false},
		}},
		{"sa2024-06-14", map[string]c{"inside": {inside, true}}},
		{"sa2024-06-15", map[string]c{"inside": {inside, false}}},
		{"eb2024-06-16", map[string]c{"inside": {inside, true}}},
		{"eb2024-06-15", map[string]c{"inside": {inside, false}}},
		// now is 2030: 10% of the ~6 years before it widens 2024 by ~7 months each side.
		{"ap2024", map[string]c{
			"inside": {inside, true}, "atEnd": {atEnd, true}, "covering": {covering, true},
			"far before": {val("2023-04-01"), false}, "near before": {val("2023-07-01"), true},
			"far after": {val("2025-09-01"), false}, "near after": {val("2025-06-01"), true},
		}},
	}
	for _, tt := range tests {
		d, err := parseDate(tt.search, now)
		if err != nil {
			t.Fatalf("parseDate(%q): %v", tt.search, err)
		}
		for name, c := range tt.cases {
			if got := d.Matches(c.r); got != c.want {
				t.Errorf("%s matches %s = %v, want %v", tt.search, name, got, c.want)
			}
		}
	}
}

func TestParseDatePrefix(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []Prefix{PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb} {
		d, err := parseDate(string(p)+"2024-05", now)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if d.Prefix != p || d.Range != rng("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z") {
			t.Errorf("%s2024-05 parsed as %+v", p, d)
		}
	}
	d, err := parseDate("2024-05", now)
	if err != nil || d.Prefix != PrefixEq {
		t.Errorf("no prefix: got %+v, %v; want eq", d, err)
	}
	for _, bad := range []string{"xx2024", "EQ2024", "e2024", "eq", "ge2024-13"} {
		if _, err := parseDate(bad, now); err == nil {
			t.Errorf("parseDate(%q) succeeded, want an error", bad)
		}
	}
}
