package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// A component is one part of a process: an engine, a server, the workers.
// Components start in order and stop in reverse, so what is started later
// (a sender: the HTTP API) stops before what it sends to (the workers, then
// the engines).
type component struct {
	name string
	// run, when set, runs from start until stop; an error it returns
	// before it is stopped ends the process (lifecycle.failed).
	run func(ctx context.Context) error
	// stop, when set, is the soft stop: take no new work and let work in
	// flight finish within budget. run's context is cancelled after it.
	stop func(ctx context.Context) error
	// budget bounds stop; zero is no bound. Each component has its own.
	budget time.Duration
}

// closer is a component that only releases something at the stop.
func closer(name string, close func() error) component {
	return component{name: name, stop: func(context.Context) error { return close() }}
}

// lifecycle holds the started components of a process.
type lifecycle struct {
	log    *slog.Logger
	up     []*running
	failed chan error // a run that ended on its own
}

type running struct {
	component
	cancel context.CancelFunc
	done   chan struct{}
}

func newLifecycle(log *slog.Logger) *lifecycle {
	return &lifecycle{log: log, failed: make(chan error, 1)}
}

// start starts c, after every component started before it. ctx's values,
// not its end, reach c.run: only stop ends it.
func (l *lifecycle) start(ctx context.Context, c component) {
	r := &running{component: c}
	l.up = append(l.up, r)
	if c.run == nil {
		return
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if err := c.run(ctx); err != nil && ctx.Err() == nil {
			select {
			case l.failed <- fmt.Errorf("%s: %w", c.name, err):
			default: // the process is ending already
			}
		}
	}()
}

// stopAll stops the started components in reverse order, each within its
// own budget, and waits for each one's run to return before the next stops.
func (l *lifecycle) stopAll() {
	for i := len(l.up) - 1; i >= 0; i-- {
		r := l.up[i]
		if r.stop != nil {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if r.budget > 0 {
				ctx, cancel = context.WithTimeout(ctx, r.budget)
			}
			if err := r.stop(ctx); err != nil {
				l.log.Warn("stop", "component", r.name, "err", err)
			}
			cancel()
		}
		if r.cancel != nil {
			r.cancel()
			<-r.done
		}
	}
	l.up = nil
}
