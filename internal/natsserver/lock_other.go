//go:build !unix

package natsserver

import "os"

// lockStore is a no-op where flock is missing.
func lockStore(string) (*os.File, error) { return nil, nil }
