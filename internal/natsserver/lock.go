package natsserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/flock"
)

// lockStore takes an exclusive lock on dir's lock file, held until the file
// is closed: two servers on one store would corrupt it.
func lockStore(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsserver: create store dir: %w", err)
	}
	f, err := flock.Exclusive(filepath.Join(dir, "apiary.lock"))
	if errors.Is(err, flock.ErrHeld) {
		return nil, apiary.Wrap(err, apiary.KindConflict, "natsserver: the store is in use by another server")
	}
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	return f, nil
}
