package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/storage/natskv"
)

// maxBodyLimitMiB is the largest --body-limit-mib: an ingest request stages
// at about its body's size (upload stores text and files byte for byte) plus
// a sealed envelope, in a blob of at most natskv.MaxBlobSize.
const maxBodyLimitMiB = natskv.MaxBlobSize>>20 - 1

// Config is everything `apiary` reads from flags and APIARY_* variables.
// cmd/apiary is the only place that reads either. Each port's part lives in
// the port's file, beside its flags, validation and table of adapters.
type Config struct {
	DataDir  string
	LogLevel string

	HTTP        HTTPConfig        // httpserver.go: listener, TLS, connection limits, HTTP stop budget
	API         APIConfig         // request limits and per-token budgets
	Workers     WorkersConfig     // the worker pool and its stop budget
	Pipeline    PipelineConfig    // chunking
	Webhooks    WebhooksConfig    // webhooks.go
	Sources     SourcesConfig     // sources.go
	Connections ConnectionsConfig // connections.go: OAuth providers
	NATS        NATSConfig        // nats.go: records, events and the embedded server
	Queue       QueueConfig       // queue.go
	Keys        KeysConfig        // keys.go
	Vectors     VectorsConfig     // vectors.go
	Embedder    EmbedderConfig    // embedder.go
}

// APIConfig limits what a request may ask of the API.
type APIConfig struct {
	BodyLimitMiB int
	MaxDocuments int

	// Per-token request budget, and the per-account budget in cost units
	// shared by all of an account's tokens.
	RateLimit    float64
	RateBurst    int
	AccountRate  float64
	AccountBurst int

	AuditRetention time.Duration // audit log entries older are pruned (audit.go)

	BootstrapToken secret // APIARY_BOOTSTRAP_TOKEN, environment only
}

func (c *APIConfig) register(f *flags) {
	f.int(&c.BodyLimitMiB, "body-limit-mib", 32, "largest request body in MiB (413 beyond)")
	f.int(&c.MaxDocuments, "max-documents", 1000, "most documents in one ingest request")
	f.float(&c.RateLimit, "rate-limit", 50, "requests per second per token")
	f.int(&c.RateBurst, "rate-burst", 100, "burst of requests per token")
	f.float(&c.AccountRate, "account-rate-limit", 200, "cost units per second per account, shared by its tokens")
	f.int(&c.AccountBurst, "account-rate-burst", 400, "burst of cost units per account")
	f.dur(&c.AuditRetention, "audit-retention", defaultAuditRetention, "how long audit log entries are kept (pruned hourly)")
	c.BootstrapToken = secret(os.Getenv("APIARY_BOOTSTRAP_TOKEN"))
}

func (c APIConfig) validate() error {
	var errs []error
	if c.BodyLimitMiB < 1 || c.BodyLimitMiB > maxBodyLimitMiB {
		errs = append(errs, fmt.Errorf("--body-limit-mib must be 1 to %d: a request is staged whole, in a blob of at most %d MiB", maxBodyLimitMiB, natskv.MaxBlobSize>>20))
	}
	if c.RateLimit <= 0 || c.RateBurst < 1 {
		errs = append(errs, errors.New("--rate-limit must be positive and --rate-burst at least 1"))
	}
	if c.AccountRate <= 0 || c.AccountBurst < 1 {
		errs = append(errs, errors.New("--account-rate-limit must be positive and --account-rate-burst at least 1"))
	}
	if c.AuditRetention < time.Hour {
		errs = append(errs, errors.New("--audit-retention must be at least 1h (e.g. 2160h for 90 days)"))
	}
	return errors.Join(errs...)
}

// maxOutageGiveUp bounds --outage-give-up (24h): the deliveries it allows a job
// (workers.PoolConfig.MaxDeliveries, about 400 at 24h) stay within what an
// SQS redrive policy can allow (1000).
const maxOutageGiveUp = 24 * time.Hour

// WorkersConfig sizes the worker pool.
type WorkersConfig struct {
	Count           int           // --workers
	JobsPerAccount  int           // 0: workers.FairConfig's default
	MaxAttempts     int           // deliveries before a job is marked failed
	OutageGiveUp    time.Duration // how long a job is retried past MaxAttempts on outages
	Lease           time.Duration // queue ack wait and job record lease
	ShutdownTimeout time.Duration // the workers' stop budget, after the HTTP server's
	// ScheduleInterval is how often the scheduler looks for due
	// connection schedules.
	ScheduleInterval time.Duration
	// RevokedConnectionRetention is how long a revoked connection is kept
	// before the scheduler deletes it.
	RevokedConnectionRetention time.Duration
}

func (c *WorkersConfig) register(f *flags) {
	f.int(&c.Count, "workers", 4, "jobs processed at once by this process")
	f.int(&c.JobsPerAccount, "jobs-per-account", 0, "most of one account's jobs processed at once (0: three quarters of --workers)")
	f.int(&c.MaxAttempts, "max-attempts", 5, "deliveries of a job before it is marked failed; an outage of a dependency does not spend them")
	f.dur(&c.OutageGiveUp, "outage-give-up", time.Hour, "how long after it was queued a job failing on an outage (Milvus, the embedder, KMS unavailable) is still retried past --max-attempts")
	f.dur(&c.Lease, "lease", 60*time.Second, "job lease (queue ack wait); extended while a job runs")
	f.dur(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight jobs may finish after SIGTERM before they are handed back")
	f.dur(&c.ScheduleInterval, "schedule-interval", time.Minute, "how often the workers look for connection schedules due to run")
	f.dur(&c.RevokedConnectionRetention, "revoked-connection-retention", connections.DefaultRevokedRetention, "how long a disconnected (revoked) connection is kept, showing its status, before it is deleted (pruned hourly)")
}

func (c WorkersConfig) validate() error {
	var errs []error
	if c.Count < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.JobsPerAccount < 0 || c.JobsPerAccount > c.Count {
		errs = append(errs, errors.New("--jobs-per-account must be from 0 to --workers"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("--max-attempts must be at least 1"))
	}
	if c.OutageGiveUp < time.Second || c.OutageGiveUp > maxOutageGiveUp {
		errs = append(errs, errors.New("--outage-give-up must be from 1s to 24h"))
	}
	if c.Lease < 2*time.Second {
		errs = append(errs, errors.New("--lease must be at least 2s"))
	}
	if c.ScheduleInterval < time.Second {
		errs = append(errs, errors.New("--schedule-interval must be at least 1s"))
	}
	if c.RevokedConnectionRetention < time.Hour {
		errs = append(errs, errors.New("--revoked-connection-retention must be at least 1h (e.g. 720h for 30 days)"))
	}
	return errors.Join(errs...)
}

// PipelineConfig sizes chunks.
type PipelineConfig struct {
	ChunkSize    int
	ChunkOverlap int
}

func (c *PipelineConfig) register(f *flags) {
	f.int(&c.ChunkSize, "chunk-size", 0, "chunk size in tokens (approximate); 0: three quarters of the embedding model's token limit (512 for a model without one)")
	f.int(&c.ChunkOverlap, "chunk-overlap", 0, "tokens carried over between chunks; 0: an eighth of the chunk size")
}

func (c PipelineConfig) validate() error {
	switch {
	case c.ChunkSize < 0 || c.ChunkOverlap < 0:
		return errors.New("--chunk-size and --chunk-overlap must not be negative")
	case c.ChunkSize > 0 && c.ChunkOverlap >= c.ChunkSize:
		return errors.New("--chunk-overlap must be smaller than --chunk-size")
	}
	return nil
}

// flagSet registers the flags shared by the commands; each flag's default is
// its APIARY_* variable when set. The error names every variable that does
// not parse (its flag then starts at its built-in default).
func flagSet(name string, cfg *Config) (*flag.FlagSet, error) {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.str(&cfg.DataDir, "data-dir", "./apiary-data", "directory for the embedded NATS store, keyring and vector store")
	f.str(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	cfg.HTTP.register(f)
	cfg.API.register(f)
	cfg.Workers.register(f)
	cfg.Pipeline.register(f)
	cfg.Webhooks.register(f)
	cfg.Sources.register(f)
	cfg.Connections.register(f)
	cfg.NATS.register(f)
	cfg.Queue.register(f)
	cfg.Keys.register(f)
	cfg.Vectors.register(f)
	cfg.Embedder.register(f)
	return f.FlagSet, errors.Join(f.errs...)
}

// Validate reports every problem with cfg for the command role ("serve",
// "api" or "worker") at once.
func (c *Config) Validate(role string) error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(append(errs,
		c.HTTP.validate(role),
		c.API.validate(),
		c.Workers.validate(),
		c.Pipeline.validate(),
		c.Connections.validate(),
		c.Sources.validate(),
		c.Keys.validate(),
		c.NATS.validate(role),
		queues.check(c, role, "--queue", c.Queue.Name),
		keyProviders.check(c, role, "--keys", c.Keys.Name),
		vectorStores.check(c, role, "--vectors", c.Vectors.Name),
		embedders.check(c, role, "--embedder", c.Embedder.Name),
	)...)
}

// checkConfig reports every problem of the environment (flagSet's error)
// and of cfg for role at once.
func checkConfig(envErr error, cfg *Config, role string) error {
	if err := errors.Join(envErr, cfg.Validate(role)); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return nil
}

// engines names the engines cfg selects, for logs and for `apiary bench` to
// tell embedded from distributed.
func (c Config) engines() []any {
	nats := c.NATS.URL
	if nats == "" {
		nats = "embedded"
	} else {
		nats = "external" // the URL may hold credentials
	}
	return []any{"nats", nats, "queue", c.Queue.Name, "keys", c.Keys.Name, "vectors", c.Vectors.Name, "embedder", c.Embedder.Name}
}

// embedded returns cfg with every engine at its embedded default: the first
// entry of each table, and no external NATS.
func (c Config) embedded() Config {
	c.NATS.URL = ""
	c.Queue.Name = queues[0].name
	c.Keys.Name = keyProviders[0].name
	c.Vectors.Name = vectorStores[0].name
	return c
}

// A table is a port's adapters by the name its flag takes; the first entry
// is the flag's default. Adding an adapter is adding an entry.
type table[T any] []adapter[T]

type adapter[T any] struct {
	name  string
	about string // for --help, when the name does not say it all
	// check, when set, reports what this adapter needs of cfg in role.
	check func(cfg *Config, role string) error
	// open returns the adapter. It may use what a has opened before it
	// (see newApp for the order) and hand a.closeLater what to release.
	open func(ctx context.Context, a *app) (T, error)
}

// choices lists the names: "a or b", "a, b or c".
func (t table[T]) choices() string { return t.list(func(e adapter[T]) string { return e.name }) }

// help lists the names, each with what it is about.
func (t table[T]) help() string {
	return t.list(func(e adapter[T]) string {
		if e.about == "" {
			return e.name
		}
		return e.name + " (" + e.about + ")"
	})
}

func (t table[T]) list(item func(adapter[T]) string) string {
	names := make([]string, len(t))
	for i, e := range t {
		names[i] = item(e)
	}
	return orList(names)
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func (t table[T]) find(name string) (adapter[T], bool) {
	for _, e := range t {
		if e.name == name {
			return e, true
		}
	}
	return adapter[T]{}, false
}

// check reports an unknown name, or what the named adapter misses in cfg.
func (t table[T]) check(cfg *Config, role, flagName, name string) error {
	e, ok := t.find(name)
	switch {
	case !ok:
		return fmt.Errorf("%s %q: use %s", flagName, name, t.choices())
	case e.check != nil:
		return e.check(cfg, role)
	}
	return nil
}

// open opens the named adapter (checked by Config.Validate).
func (t table[T]) open(ctx context.Context, a *app, name string) (T, error) {
	e, ok := t.find(name)
	if !ok {
		var zero T
		return zero, fmt.Errorf("no adapter %q: use %s", name, t.choices())
	}
	return e.open(ctx, a)
}

// secret is a string that prints as a redaction.
type secret string

func (s secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

func (s secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// envName maps a flag name to its environment variable: data-dir → APIARY_DATA_DIR.
func envName(flagName string) string {
	return "APIARY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags registers flags whose defaults are their APIARY_* variables, and
// keeps the variables that do not parse in errs.
type flags struct {
	*flag.FlagSet
	errs []error
}

func (f *flags) str(p *string, name, def, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	f.StringVar(p, name, def, usage+" ("+envName(name)+")")
}

// choice registers the flag that picks an adapter of t, defaulting to its first.
func choice[T any](f *flags, p *string, name string, t table[T], usage string) {
	f.str(p, name, t[0].name, usage+": "+t.help())
}

func (f *flags) int(p *int, name string, def int, usage string) {
	f.IntVar(p, name, envParse(f, name, def, strconv.Atoi, "a whole number"), usage+" ("+envName(name)+")")
}

func (f *flags) float(p *float64, name string, def float64, usage string) {
	parse := func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }
	f.Float64Var(p, name, envParse(f, name, def, parse, "a number"), usage+" ("+envName(name)+")")
}

func (f *flags) dur(p *time.Duration, name string, def time.Duration, usage string) {
	f.DurationVar(p, name, envParse(f, name, def, time.ParseDuration, "a duration (like 30s or 5m)"), usage+" ("+envName(name)+")")
}

func (f *flags) bool(p *bool, name, usage string) { f.boolOr(p, name, false, usage) }

// boolOr is bool with the default def.
func (f *flags) boolOr(p *bool, name string, def bool, usage string) {
	f.BoolVar(p, name, envParse(f, name, def, strconv.ParseBool, "true or false"), usage+" ("+envName(name)+")")
}

// envParse returns name's APIARY_* variable parsed by parse, or def when it
// is unset; an unparsable value is kept in f.errs (saying it is not what)
// and def is used.
func envParse[T any](f *flags, name string, def T, parse func(string) (T, error), what string) T {
	v, ok := os.LookupEnv(envName(name))
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s=%q is not %s", envName(name), v, what))
		return def
	}
	return x
}
