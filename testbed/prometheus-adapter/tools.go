//go:build tools

// Package tools pins prometheus-adapter for `go build sigs.k8s.io/prometheus-adapter/cmd/adapter`.
// (`go install …@v0.12.0` is refused here: it reads the module's version list for deprecation
// notices, and the module proxy answers 403 for that list.)
package tools

import _ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
