// Package flock takes exclusive advisory locks on files: one process at a
// time in a data directory, a NATS store or a download directory.
//
// A lock belongs to an open file. A child process forked while the file is
// open shares it until the child execs, so a lock that was just released can
// look held for a moment (any process that runs commands forks). Exclusive
// therefore waits a little before it reports a lock held.
package flock

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrHeld reports a lock held by another open file.
var ErrHeld = errors.New("flock: the lock is held by another open file")

// settle is how long Exclusive waits for a lock held by a forked child.
const settle = 2 * time.Second

// Exclusive opens path (creating it, mode 0600) and takes its exclusive lock,
// held until the returned file is closed. A lock still held after a short
// wait is ErrHeld. Where the platform has no flock, the file is opened and
// there is no exclusion.
func Exclusive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(settle)
	for {
		ok, err := Try(f)
		switch {
		case err != nil:
			f.Close()
			return nil, fmt.Errorf("flock: lock %s: %w", path, err)
		case ok:
			return f, nil
		case time.Now().After(deadline):
			f.Close()
			return nil, ErrHeld
		}
		time.Sleep(10 * time.Millisecond)
	}
}
