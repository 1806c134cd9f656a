//go:build tools

// Package tools pins kopia, one of the peers that make bench-peers
// measures cairn against (integration/peers).
package tools

import _ "github.com/kopia/kopia"
