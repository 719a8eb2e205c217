// Package workers runs jobs taken from the queue port.
//
// A Pool keeps at most Concurrency jobs running. It takes a free slot before
// it asks the queue for work. It shares the slots among accounts (fair.go):
// at most Fair.MaxPerAccount jobs of one account run at once, and while an
// account is at its cap the pool looks further down the queue for other
// accounts' jobs, holding (leases renewed, at most Fair.MaxHeld) the ones it
// passes over; held deliveries go back to the queue at once on Stop.
// Each delivery runs in its own goroutine under a context derived from Run's;
// while the Handler runs, the pool extends the delivery's lease every
// ExtendEvery so that a long job is not redelivered to another worker.
//
// What happens to a delivery afterwards is decided in one place (decide):
//
//	Handle returns nil                          → Ack
//	apiary.IsPermanent(err), or the last attempt → OnGiveUp, then Term
//	                                               or Nack when OnGiveUp returns an error
//	any other error (a panic included)           → Nack after apiary.RetryDelay(err),
//	                                               or exponential backoff with jitter
//	the pool was hard-stopped                    → Nack(0): handed back at once
//
// An outage (an error of kind apiary.KindUnavailable) does not spend the
// job's attempts: past MaxAttempts it is retried with backoff until the
// job's message has been on the queue for OutageGiveUp (queue.Delivery's
// Enqueued, kept by the queue across redeliveries), and given up then. A
// delivery past MaxAttempts that never failed in a handler (its worker
// died) is run again within that window too, at most MaxDeliveries in all,
// and given up without running outside it.
//
// Acks, nacks and OnGiveUp run under context.WithoutCancel with their own
// short timeout, so a stopping pool still settles what it finished.
//
// Stopping has two tiers: Stop(ctx) stops receiving and waits for running
// handlers; if ctx ends first it cancels their contexts (with a cause), hands
// their deliveries back and waits for every goroutine before returning.
// Ending Run's context is a hard stop.
//
// Delivery is at least once: a handler must be idempotent, since a delivery
// whose worker crashed, or whose settlement failed, is delivered again.
//
// A Mux dispatches each delivery to the Handler of its job kind
// (apiary.JobMessage.JobKind; a message without a kind is an ingest job)
// through Middleware, func(Handler) Handler, so that metrics, audit and
// tracing wrap handlers instead of editing them. A kind with no handler
// fails its delivery for good, saying so.
//
// Handlers and the Sweeper change job records only through the job service
// (workers/jobs): it holds a running job by a lease on its record, keeps each
// document's outcome apart from the record, writes progress at most every
// ProgressEvery, fails a job whose runs ended with their process
// apiary.MaxInterrupted times, and publishes each job's final event once.
// The IngestHandler runs ingestion jobs: a redelivered job skips the
// documents already done. The ReembedHandler runs re-embed jobs, which embed
// an account's chunks of another model again, in place; its Reconcile, run
// as the workers start, submits one per account whose chunks need it.
package workers
