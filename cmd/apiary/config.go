package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is everything `apiary` reads from flags and APIARY_* variables.
// cmd/apiary is the only place that reads either.
type Config struct {
	DataDir         string
	Addr            string
	LogLevel        string
	Workers         int
	JobsPerAccount  int // 0: workers.FairConfig's default
	MaxAttempts     int
	Lease           time.Duration
	ShutdownTimeout time.Duration
	BodyLimitMiB    int
	MaxDocuments    int
	ChunkSize       int
	ChunkOverlap    int
	EmbedDim        int
	RateLimit       float64
	RateBurst       int
	AccountRate     float64
	AccountBurst    int

	// Engines: embedded by default, distributed when set.
	NATSURL          string // external NATS (cluster); empty: embedded server in the data dir
	NATSCreds        string // NATS credentials file
	NATSCA           string // CA bundle for NATS TLS
	NATSCert         string // client certificate for NATS mTLS
	NATSKey          string // client key for NATS mTLS
	NATSReplicas     int    // replicas of streams and buckets
	Queue            string // jetstream | sqs
	SQSQueue         string
	SQSEndpoint      string
	Keys             string // local | awskms
	KMSEndpoint      string
	Vectors          string // local | milvus
	MilvusAddr       string
	MilvusCollection string

	AllowPrivateWebhooks bool

	TLSCert string // PEM certificate (chain) for HTTPS
	TLSKey  string // PEM private key for HTTPS

	// Secrets come from the environment only and are never printed.
	RootKey        secret // APIARY_ROOT_KEY
	BootstrapToken secret // APIARY_BOOTSTRAP_TOKEN
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

// flagSet registers the flags shared by the commands; each flag's default is
// its APIARY_* variable when set.
func flagSet(name string, cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	str := func(p *string, n, def, usage string) { fs.StringVar(p, n, envOr(n, def), usage+" ("+envName(n)+")") }
	integer := func(p *int, n string, def int, usage string) {
		fs.IntVar(p, n, envInt(n, def), usage+" ("+envName(n)+")")
	}
	dur := func(p *time.Duration, n string, def time.Duration, usage string) {
		fs.DurationVar(p, n, envDur(n, def), usage+" ("+envName(n)+")")
	}
	str(&cfg.DataDir, "data-dir", "./apiary-data", "directory for the embedded NATS store, keyring and vector store")
	str(&cfg.Addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	str(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	integer(&cfg.Workers, "workers", 4, "jobs processed at once by this process")
	integer(&cfg.JobsPerAccount, "jobs-per-account", 0, "most of one account's jobs processed at once (0: three quarters of --workers)")
	integer(&cfg.MaxAttempts, "max-attempts", 5, "deliveries of a job before it is marked failed")
	dur(&cfg.Lease, "lease", 60*time.Second, "job lease (queue ack wait); extended while a job runs")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight jobs may finish after SIGTERM before they are handed back")
	integer(&cfg.BodyLimitMiB, "body-limit-mib", 32, "largest request body in MiB (413 beyond)")
	integer(&cfg.MaxDocuments, "max-documents", 1000, "most documents in one ingest request")
	integer(&cfg.ChunkSize, "chunk-size", 512, "chunk size in tokens (approximate)")
	integer(&cfg.ChunkOverlap, "chunk-overlap", 64, "tokens carried over between chunks")
	integer(&cfg.EmbedDim, "embed-dim", 384, "dimension of the local embedder's vectors")
	str(&cfg.NATSURL, "nats-url", "", "external NATS server or cluster URL(s); empty runs an embedded server in the data dir")
	str(&cfg.NATSCreds, "nats-creds", "", "NATS credentials (.creds) file")
	str(&cfg.NATSCA, "nats-ca", "", "CA certificates (PEM) that sign the NATS servers' TLS certificates")
	str(&cfg.NATSCert, "nats-cert", "", "client certificate (PEM) for NATS mutual TLS")
	str(&cfg.NATSKey, "nats-key", "", "client key (PEM) for NATS mutual TLS")
	integer(&cfg.NATSReplicas, "nats-replicas", 1, "replicas of every stream and bucket (3 on a three-node cluster)")
	str(&cfg.Queue, "queue", "jetstream", "job queue: jetstream or sqs")
	str(&cfg.SQSQueue, "sqs-queue", "apiary-jobs", "SQS queue name; it and <name>-dlq are created if missing")
	str(&cfg.SQSEndpoint, "sqs-endpoint", "", "SQS endpoint URL (empty: AWS's, from AWS_REGION)")
	str(&cfg.Keys, "keys", "local", "account keys: local (keyring in the data dir) or awskms (one KMS key per account)")
	str(&cfg.KMSEndpoint, "kms-endpoint", "", "KMS endpoint URL (empty: AWS's, from AWS_REGION)")
	str(&cfg.Vectors, "vectors", "local", "vector store: local (in the data dir) or milvus")
	str(&cfg.MilvusAddr, "milvus-addr", "", "Milvus address HOST:PORT")
	str(&cfg.MilvusCollection, "milvus-collection", "apiary_chunks", "Milvus collection")
	str(&cfg.TLSCert, "tls-cert", "", "PEM certificate chain: serve HTTPS (TLS 1.2+) instead of HTTP")
	str(&cfg.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&cfg.AllowPrivateWebhooks, "allow-private-webhooks", envBool("allow-private-webhooks"), "let webhooks call private and loopback addresses (self-hosted installs, tests) ("+envName("allow-private-webhooks")+")")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", envFloat("rate-limit", 50), "requests per second per token ("+envName("rate-limit")+")")
	integer(&cfg.RateBurst, "rate-burst", 100, "burst of requests per token")
	fs.Float64Var(&cfg.AccountRate, "account-rate-limit", envFloat("account-rate-limit", 200), "cost units per second per account, shared by its tokens ("+envName("account-rate-limit")+")")
	integer(&cfg.AccountBurst, "account-rate-burst", 400, "burst of cost units per account")
	cfg.RootKey = secret(os.Getenv("APIARY_ROOT_KEY"))
	cfg.BootstrapToken = secret(os.Getenv("APIARY_BOOTSTRAP_TOKEN"))
	return fs
}

func envOr(flagName, def string) string {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		return v
	}
	return def
}

// envParse returns flagName's APIARY_* variable parsed by parse, or def when
// it is unset; an unparsable value is recorded for Validate (saying it is not
// what) and def is used.
func envParse[T any](flagName string, def T, parse func(string) (T, error), what string) T {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		badEnv = append(badEnv, fmt.Errorf("%s=%q is not %s", envName(flagName), v, what))
		return def
	}
	return x
}

func envInt(flagName string, def int) int {
	return envParse(flagName, def, strconv.Atoi, "a whole number")
}

func envFloat(flagName string, def float64) float64 {
	return envParse(flagName, def, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }, "a number")
}

func envDur(flagName string, def time.Duration) time.Duration {
	return envParse(flagName, def, time.ParseDuration, "a duration (like 30s or 5m)")
}

func envBool(flagName string) bool {
	return envParse(flagName, false, strconv.ParseBool, "true or false")
}

// badEnv collects unparsable environment values; Validate reports them.
var badEnv []error

// Validate reports every problem with cfg for the command role ("serve",
// "api" or "worker") at once.
func (c *Config) Validate(role string) error {
	errs := append([]error(nil), badEnv...)
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.JobsPerAccount < 0 || c.JobsPerAccount > c.Workers {
		errs = append(errs, errors.New("--jobs-per-account must be from 0 to --workers"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("--max-attempts must be at least 1"))
	}
	if c.Lease < 2*time.Second {
		errs = append(errs, errors.New("--lease must be at least 2s"))
	}
	if c.BodyLimitMiB < 1 {
		errs = append(errs, errors.New("--body-limit-mib must be at least 1"))
	}
	if c.ChunkOverlap >= c.ChunkSize {
		errs = append(errs, errors.New("--chunk-overlap must be smaller than --chunk-size"))
	}
	if c.RateLimit <= 0 || c.RateBurst < 1 {
		errs = append(errs, errors.New("--rate-limit must be positive and --rate-burst at least 1"))
	}
	if c.AccountRate <= 0 || c.AccountBurst < 1 {
		errs = append(errs, errors.New("--account-rate-limit must be positive and --account-rate-burst at least 1"))
	}
	if c.Queue != "jetstream" && c.Queue != "sqs" {
		errs = append(errs, fmt.Errorf("--queue %q: use jetstream or sqs", c.Queue))
	}
	if c.Keys != "local" && c.Keys != "awskms" {
		errs = append(errs, fmt.Errorf("--keys %q: use local or awskms", c.Keys))
	}
	if c.Vectors != "local" && c.Vectors != "milvus" {
		errs = append(errs, fmt.Errorf("--vectors %q: use local or milvus", c.Vectors))
	}
	if c.Vectors == "milvus" && c.MilvusAddr == "" {
		errs = append(errs, errors.New("--vectors milvus needs --milvus-addr HOST:PORT"))
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		errs = append(errs, errors.New("--nats-replicas must be 1 to 5"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel))
	}
	if role != "serve" {
		if c.NATSURL == "" {
			errs = append(errs, fmt.Errorf("apiary %s shares NATS with the other processes: set --nats-url", role))
		}
		if c.Vectors == "local" {
			errs = append(errs, fmt.Errorf("apiary %s: the local vector store belongs to one process; use --vectors milvus (or apiary serve)", role))
		}
	}
	return errors.Join(errs...)
}
