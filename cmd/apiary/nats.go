package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
)

// NATSConfig is the NATS that holds records, events and staged uploads (and
// the job queue, with --queue jetstream): an embedded server in the data dir
// by default, or an external one (a cluster) at URL.
type NATSConfig struct {
	URL      string // empty: the embedded server
	Creds    string // credentials file
	CA       string // CA bundle for NATS TLS
	Cert     string // client certificate for NATS mTLS
	Key      string // client key for NATS mTLS
	Replicas int    // replicas of streams and buckets

	EventsMaxAge time.Duration // how long job events are kept for replay
	EventsMaxMiB int           // the event stream's size bound; the oldest go first
}

func (c *NATSConfig) register(f *flags) {
	f.str(&c.URL, "nats-url", "", "external NATS server or cluster URL(s); empty runs an embedded server in the data dir")
	f.str(&c.Creds, "nats-creds", "", "NATS credentials (.creds) file")
	f.str(&c.CA, "nats-ca", "", "CA certificates (PEM) that sign the NATS servers' TLS certificates")
	f.str(&c.Cert, "nats-cert", "", "client certificate (PEM) for NATS mutual TLS")
	f.str(&c.Key, "nats-key", "", "client key (PEM) for NATS mutual TLS")
	f.int(&c.Replicas, "nats-replicas", 1, "replicas of every stream and bucket (3 on a three-node cluster)")
	f.dur(&c.EventsMaxAge, "events-max-age", 7*24*time.Hour, "how long job events are kept for replay (GET /v1/events, SSE resume, webhooks catching up)")
	f.int(&c.EventsMaxMiB, "events-max-mib", 1024, "size bound of the event stream in MiB; past it the oldest events go first")
}

func (c NATSConfig) validate(role string) error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, errors.New("--nats-replicas must be 1 to 5"))
	}
	if c.EventsMaxAge < time.Minute || c.EventsMaxMiB < 1 {
		errs = append(errs, errors.New("--events-max-age must be at least 1m and --events-max-mib at least 1"))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	if role != roleServe && c.URL == "" {
		errs = append(errs, fmt.Errorf("apiary %s shares NATS with the other processes: set --nats-url", role))
	}
	return errors.Join(errs...)
}

// openRecords connects to NATS (see connectNATS) and opens the record store.
func (a *app) openRecords(ctx context.Context) (err error) {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := a.connectNATS(); err != nil {
		return err
	}
	a.recs, err = records.Open(ctx, natskv.NewKVStore(a.js, a.kvConfig()))
	if err != nil {
		return err
	}
	a.forgets.add(a.recs) // a deleted account's writes are refused, here too
	return nil
}

func (a *app) kvConfig() natskv.Config {
	return natskv.Config{Replicas: a.cfg.NATS.Replicas, EraseReplaced: records.SealedBuckets, Logger: a.log}
}

// connectNATS connects to --nats-url, or starts the embedded server in the
// data dir. The embedded server opens no port: this process is its only
// client, connected in-process. Its job stream fsyncs before it
// acknowledges, so an acknowledged job survives a crash.
func (a *app) connectNATS() error {
	c := a.cfg.NATS
	opts := []nats.Option{nats.Name("apiary"), nats.MaxReconnects(-1)}
	if c.URL == "" {
		ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(a.cfg.DataDir, "nats"), SyncAlways: true})
		if errors.Is(err, apiary.ErrConflict) {
			return fmt.Errorf("data dir %s is in use by another apiary process: stop it first, or use --nats-url: %w", a.cfg.DataDir, err)
		}
		if err != nil {
			return err
		}
		a.lc.start(context.Background(), closer("nats server", func() error { ns.Shutdown(); return nil }))
		opts = append(opts, nats.InProcessServer(ns))
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.CA != "" {
		opts = append(opts, nats.RootCAs(c.CA))
	}
	if c.Cert != "" {
		opts = append(opts, nats.ClientCert(c.Cert, c.Key))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		// The URL may hold credentials: do not repeat it.
		return fmt.Errorf("connect to nats: %w", err)
	}
	a.lc.start(context.Background(), closer("nats", func() error { nc.Close(); return nil }))
	a.nc = nc
	if a.js, err = natsjs.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// ready reports whether the process can serve: NATS is connected.
func (a *app) ready(context.Context) error {
	if !a.nc.IsConnected() {
		return errors.New("nats is not connected")
	}
	return nil
}
