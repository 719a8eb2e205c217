//go:build unix

package flock

import (
	"errors"
	"os"
	"syscall"
)

// Try takes f's exclusive lock without waiting: false when another open file
// holds it. The lock is released when f is closed.
func Try(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
