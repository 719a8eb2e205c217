package workers

import (
	"context"
	"fmt"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Middleware wraps a Handler in another that runs around it: metrics,
// audit and tracing arrive this way instead of editing the handlers.
type Middleware func(Handler) Handler

// Mux is a Handler that dispatches each delivery to the handler registered
// for its job kind (apiary.JobMessage.JobKind: a message without a kind is
// an ingest job), through the middleware given to Use. A kind with no
// handler fails its delivery for good, saying so; the middleware sees that
// failure too.
//
// Register and Use before the pool runs; Handle is then safe for concurrent
// use.
type Mux struct {
	handlers   map[apiary.JobKind]Handler
	middleware []Middleware
}

// NewMux returns a mux with no handlers.
func NewMux() *Mux { return &Mux{handlers: map[apiary.JobKind]Handler{}} }

// Register makes h the handler of kind. It panics on an empty kind, a nil
// handler or a kind registered twice: wiring mistakes.
func (m *Mux) Register(kind apiary.JobKind, h Handler) {
	switch {
	case kind == "":
		panic("workers: Mux.Register with an empty job kind")
	case h == nil:
		panic(fmt.Sprintf("workers: Mux.Register(%q) with a nil handler", kind))
	case m.handlers[kind] != nil:
		panic(fmt.Sprintf("workers: job kind %q registered twice", kind))
	}
	m.handlers[kind] = h
}

// Use adds middleware around every handler. The first one given is the
// outermost: Use(a, b) runs a, then b, then the handler.
func (m *Mux) Use(mw ...Middleware) { m.middleware = append(m.middleware, mw...) }

// Handle runs d through the middleware and the handler of its kind.
func (m *Mux) Handle(ctx context.Context, d *queue.Delivery) error {
	h, ok := m.handlers[d.Msg.JobKind()]
	if !ok {
		h = unknownKind
	}
	for i := len(m.middleware) - 1; i >= 0; i-- {
		h = m.middleware[i](h)
	}
	return h.Handle(ctx, d)
}

// unknownKind gives up on a delivery whose kind has no handler here, with
// a reason that ends up on the failed job.
var unknownKind = HandlerFunc(func(_ context.Context, d *queue.Delivery) error {
	return apiary.Permanent(apiary.E(apiary.KindPermanent, "job kind %q is unknown to this worker", string(d.Msg.JobKind())))
})
