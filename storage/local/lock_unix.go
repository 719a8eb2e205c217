//go:build unix

package local

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/apiaryhq/apiary"
)

// lockDir takes an exclusive flock on path, held until the file is closed.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, apiary.Wrap(err, apiary.KindConflict, "local: %s is in use by another store", path)
		}
		return nil, fmt.Errorf("local: lock %s: %w", path, err)
	}
	return f, nil
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("local: sync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("local: sync %s: %w", dir, err)
	}
	return nil
}
