//go:build !unix

package flock

import "os"

// Try: platforms without flock get no exclusion.
func Try(*os.File) (bool, error) { return true, nil }
