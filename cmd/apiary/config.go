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
	integer(&cfg.MaxAttempts, "max-attempts", 5, "deliveries of a job before it is marked failed")
	dur(&cfg.Lease, "lease", 60*time.Second, "job lease (queue ack wait); extended while a job runs")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight jobs may finish after SIGTERM before they are handed back")
	integer(&cfg.BodyLimitMiB, "body-limit-mib", 32, "largest request body in MiB (413 beyond)")
	integer(&cfg.MaxDocuments, "max-documents", 1000, "most documents in one ingest request")
	integer(&cfg.ChunkSize, "chunk-size", 512, "chunk size in tokens (approximate)")
	integer(&cfg.ChunkOverlap, "chunk-overlap", 64, "tokens carried over between chunks")
	integer(&cfg.EmbedDim, "embed-dim", 384, "dimension of the local embedder's vectors")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", envFloat("rate-limit", 50), "requests per second per token ("+envName("rate-limit")+")")
	integer(&cfg.RateBurst, "rate-burst", 100, "burst of requests per token")
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

func envInt(flagName string, def int) int {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		badEnv = append(badEnv, fmt.Errorf("%s=%q is not a whole number", envName(flagName), v))
	}
	return def
}

func envFloat(flagName string, def float64) float64 {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			return n
		}
		badEnv = append(badEnv, fmt.Errorf("%s=%q is not a number", envName(flagName), v))
	}
	return def
}

func envDur(flagName string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		badEnv = append(badEnv, fmt.Errorf("%s=%q is not a duration (like 30s or 5m)", envName(flagName), v))
	}
	return def
}

// badEnv collects unparsable environment values; Validate reports them.
var badEnv []error

// Validate reports every problem with cfg at once.
func (c *Config) Validate() error {
	errs := append([]error(nil), badEnv...)
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
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
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
