// Package custody keeps the ephemeral credentials of jobs (a token passed
// with one ingest request) in the memory of the API process that accepted
// them, and hands them to the worker that runs the job — nowhere else.
//
// What it promises:
//
//   - Credentials live in this process's memory only: never in a record, a
//     queue message, an event, a log line or an error. They are kept per
//     (account, job), for min(their own expiry, apiary.MaxCredentialLifetime),
//     and wiped (their bytes zeroed) when the job ends (Ended, Release) or
//     when that lifetime runs out, whichever comes first.
//   - The count held is bounded per account and in total; a deposit past a
//     bound is refused with a classified error (rate limited, unavailable).
//   - A withdrawal is answered only for the run that holds the job's lease
//     at that moment, as the job record says (Leases).
//   - In one process (serve) the worker takes the credentials from the same
//     Custody. Across processes (api + worker) the worker asks the holder
//     named in the job record (apiary.Job.Holder) over a Transport (core
//     NATS request/reply: natscustody), sending a fresh HPKE public key
//     (hybrid X25519 + ML-KEM-768, crypto/hpke); the holder answers sealed
//     to that key, bound to the account, job, run and holder. The private
//     key lives for one withdrawal, so what the bus carries can be opened
//     by nobody later.
//   - When the holder is gone (no process answers on its subject), Withdraw
//     returns ErrHolderGone, a permanent error whose message tells the
//     caller to resubmit: the token died with that process, and retrying
//     cannot bring it back.
//
// A Custody is safe for concurrent use.
package custody
