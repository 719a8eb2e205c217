// Package jobs is the job lifecycle: each transition of a job record (the
// methods of apiary.Job) paired with its side effects on the stage, the
// queue and the event bus. The API submits and cancels jobs through a
// Service; the workers run, give up and sweep them through it. Nothing else
// writes a job record.
//
// What a Service promises:
//
//   - The job record is the truth; events are notifications. Every write is
//     a compare-and-swap of the record (Records.UpdateJob), and a transition
//     that would change nothing writes nothing.
//   - Submit stages the documents, records a queued job, claims its
//     Idempotency-Key, enqueues it and publishes job.queued, in that order.
//     A request whose key names an earlier job gets that job back (replayed),
//     and its own record ends canceled. A job that could not be queued ends
//     failed, its key released so that a retry gets a fresh attempt.
//   - One run at a time: Start takes the record's lease for one run (owner)
//     and renews it every Lease/3 until the run's Release, which lets go of
//     it. A second delivery of a held job is retried when the lease would
//     end. A lease that ran out without a release is a run that ended with
//     its process; the MaxInterrupted-th such run fails the job.
//   - Document outcomes live apart from the record (Records.RecordOutcome),
//     one small write each; the record gets the counts at most every
//     ProgressEvery, with a job.progress event.
//   - A job's final event is published once: the record is marked Notified
//     after it went out, and a redelivery publishes it again, under the same
//     id (apiary.FinalEventID), only if that mark was never written.
//   - Sweep queues the jobs that were recorded but never reached the queue.
//
// A Service is safe for concurrent use; a Run is used by one job run, its
// Record method from any number of its goroutines.
package jobs
