//go:build tools

// Package tools pins KEDA for `go build github.com/kedacore/keda/v2/cmd/{operator,adapter}`.
// (`go install …@v2.21.0` is refused: KEDA's go.mod has a replace directive.)
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
