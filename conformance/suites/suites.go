// Package suites holds the conformance suites shipped with hjbroker, one folder each (see
// conformance/README.md). A new folder with a suite.json is all it takes to ship a suite.
package suites

import (
	"embed"
	"io/fs"
)

//go:embed */*
var files embed.FS

// FS returns the shipped suites' folders.
func FS() fs.FS { return files }
