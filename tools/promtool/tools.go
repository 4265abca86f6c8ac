//go:build tools

// Package tools records the command that `make promtool` builds, so that
// `go mod tidy` keeps its module (and its go.sum lines) in go.mod. Nothing
// imports this package; the build tag keeps it out of every build.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool" // promtool
)
