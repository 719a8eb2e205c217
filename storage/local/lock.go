package local

import (
	"errors"
	"fmt"
	"os"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/flock"
)

// lockDir takes path's exclusive lock, held until the file is closed.
func lockDir(path string) (*os.File, error) {
	f, err := flock.Exclusive(path)
	if errors.Is(err, flock.ErrHeld) {
		return nil, apiary.Wrap(err, apiary.KindConflict, "local: %s is in use by another store", path)
	}
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return f, nil
}
