//go:build tools

// Package tools pins the weed command that the object-store tests run
// against (integration/s3test).
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
