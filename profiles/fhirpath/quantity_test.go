package fhirpath

import "testing"

func TestTemperatureConversion(t *testing.T) {
	e := newTestEngine(t)
	tests := []struct{ expr, want string }{
		{"98.6 '[degF]' = 37.0 'Cel'", "Boolean:true"},
		{"37.0 'Cel' = 98.6 '[degF]'", "Boolean:true"},
		{"212 '[degF]' = 100 'Cel'", "Boolean:true"},
		{"-40 'Cel' = -40 '[degF]'", "Boolean:true"},
		{"37 'Cel' = 37 '[degF]'", "Boolean:false"},
		{"310.15 'K' = 37 'Cel'", "Boolean:true"},
		{"0 'Cel' = 273.15 'K'", "Boolean:true"},
		{"36600 'mK' < 37 'Cel'", "Boolean:true"},
		{"38 'Cel' > 100 '[degF]'", "Boolean:true"},
		{"37.5 'Cel' <= 99.5 '[degF]'", "Boolean:true"},
		{"37 'Cel' ~ 98.6 '[degF]'", "Boolean:true"},
		{"37.0 'Cel'.toQuantity('[degF]')", "Quantity:98.6 '[degF]'"},
		{"50 '[degF]'.toQuantity('Cel')", "Quantity:10 'Cel'"},
		{"300.00 'K'.toQuantity('Cel')", "Quantity:26.85 'Cel'"},
		{"37 'Cel'.comparable(1 '[degF]')", "Boolean:true"},
		{"37 'Cel'.comparable(1 'g')", "Boolean:false"},
		// an affine unit inside a compound unit, or mixed with a non-temperature, is incomparable
		{"37 'Cel' = 37 'g'", ""},
		{"1 'Cel/h' = 1 'K/h'", ""},
		// adding absolute temperatures on different scales has no meaning
		{"37 'Cel' + 1 'K'", ""},
		{"37 'Cel' + 1 '[degF]'", ""},
		{"37 'Cel' + 1 'Cel'", "Quantity:38 'Cel'"},
		{"37 'Cel' * 2 'm'", ""},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			if got := render(eval(t, e, tc.expr, "")); got != tc.want {
				t.Errorf("%s\n got: %s\nwant: %s", tc.expr, got, tc.want)
			}
		})
	}
}
