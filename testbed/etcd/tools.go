//go:build tools

// Package tools pins the etcd server so `go build go.etcd.io/etcd/server/v3` builds it at the
// version in go.mod (a plain `go install` is refused: etcd's go.mod has replace directives).
package tools

import _ "go.etcd.io/etcd/server/v3"
