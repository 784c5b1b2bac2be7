package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

func newFHIRPathCmd() *cobra.Command {
	var file string
	var strict bool
	cmd := &cobra.Command{
		Use:   "fhirpath [--file F] EXPRESSION",
		Short: "Evaluate a FHIRPath expression against a JSON resource read from --file or stdin",
		Long: `Evaluate a FHIRPath expression against a FHIR R4 JSON resource and print the result
collection as one JSON array: primitives as JSON values, dates and times as strings,
Quantities as FHIR Quantity objects and elements as their JSON.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The model is built here rather than at start-up so other commands do not pay for it.
			expr, err := fhirpath.NewEngine(r4model.Load()).Compile(args[0])
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			name := "stdin"
			if file != "" && file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("read resource: %w", err)
				}
				defer f.Close()
				in, name = f, file
			}
			resource, err := decodeResource(in)
			if err != nil {
				return fmt.Errorf("read resource from %s: %w", name, err)
			}
			var opts []fhirpath.Option
			if strict {
				opts = append(opts, fhirpath.Strict())
			}
			out, err := expr.Evaluate(resource, opts...)
			if err != nil {
				return err
			}
			items := make([]any, len(out))
			for i, v := range out {
				items[i] = v.JSON()
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetEscapeHTML(false)
			return enc.Encode(items)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "JSON resource to evaluate against (default stdin)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on elements the resource type does not define")
	return cmd
}

// decodeResource reads one JSON value, keeping numbers exact as FHIR decimals require.
func decodeResource(r io.Reader) (any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("no JSON input")
		}
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return v, nil
}
