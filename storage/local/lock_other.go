//go:build !unix

package local

import (
	"fmt"
	"os"
)

// lockDir opens the lock file; platforms without flock get no exclusion.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local: open %s: %w", path, err)
	}
	return f, nil
}

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }
