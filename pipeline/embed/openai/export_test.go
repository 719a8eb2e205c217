package openai

import (
	"context"
	"time"
)

// SetSleep replaces e's wait between tries, so that tests count the waits
// instead of taking them.
func SetSleep(e *Embedder, f func(context.Context, time.Duration) error) { e.sleep = f }
