//go:build tools

// Package tools pins llm-d-inference-sim (pure Go since v0.8.0: no cgo tokenizer, no libzmq) for
// `go build github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim`.  (`go install …@v0.10.2`
// is refused here: the module proxy answers 403 for the module's version list.)
package tools

import _ "github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim"
