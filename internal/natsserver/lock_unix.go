//go:build unix

package natsserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/apiaryhq/apiary"
)

// lockStore takes an exclusive flock on dir's lock file, held until the file
// is closed: two servers on one store would corrupt it.
func lockStore(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsserver: create store dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "apiary.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natsserver: open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, apiary.Wrap(err, apiary.KindConflict, "natsserver: the store is in use by another server")
		}
		return nil, fmt.Errorf("natsserver: lock store: %w", err)
	}
	return f, nil
}
