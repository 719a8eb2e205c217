package milvus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Consistency is the Milvus consistency level of reads (Search, Count).
type Consistency string

const (
	// Strong reads see every write acknowledged before the read started.
	Strong Consistency = "strong"
	// Bounded reads may miss writes of the last few seconds (the server's
	// graceful time, 5 s by default); cheapest on a busy cluster.
	Bounded Consistency = "bounded"
	// Session reads see the writes this Store made, not other processes'.
	Session Consistency = "session"
	// Eventually reads see whatever the serving nodes have applied.
	Eventually Consistency = "eventually"
)

func (c Consistency) level() (entity.ConsistencyLevel, bool) {
	switch c {
	case Strong:
		return entity.ClStrong, true
	case Bounded:
		return entity.ClBounded, true
	case Session:
		return entity.ClSession, true
	case Eventually:
		return entity.ClEventually, true
	}
	return 0, false
}

// IndexType chooses the vector index built when Open creates it.
type IndexType string

const (
	// IndexDefault builds HNSW and falls back to AUTOINDEX when the server
	// refuses HNSW (some managed and embedded servers only offer AUTOINDEX).
	IndexDefault IndexType = ""
	// IndexHNSW builds HNSW with M and EfConstruction, and fails if the
	// server refuses it.
	IndexHNSW IndexType = "HNSW"
	// IndexAuto lets the server choose (AUTOINDEX).
	IndexAuto IndexType = "AUTOINDEX"
)

// Defaults of Config.
const (
	DefaultCollection     = "apiary_chunks"
	DefaultM              = 16
	DefaultEfConstruction = 200
	DefaultSearchEf       = 128
	DefaultTimeout        = 10 * time.Second
	DefaultOpenTimeout    = time.Minute
	DefaultConsistency    = Bounded
)

var collectionName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,254}$`)

// Config configures a Store.
type Config struct {
	// Addr is the Milvus gRPC endpoint, "host:port" or an http(s):// URI
	// (https enables TLS). Required.
	Addr string
	// Username and Password authenticate when set. Password is never
	// printed by String.
	Username string
	Password string
	// TLS turns on TLS to Milvus (an https:// Addr does too). CA is a PEM
	// file of the certificates that sign the server's (empty: the system's
	// roots); Cert and Key are a PEM client certificate and key for mutual
	// TLS. Setting CA or Cert implies TLS.
	TLS  bool
	CA   string
	Cert string
	Key  string
	// DBName selects a database; empty means "default".
	DBName string
	// Collection is the collection holding every account's chunks.
	// Default "apiary_chunks".
	Collection string
	// Dim is the dimension of every vector. Required; Open fails with an
	// Invalid error when an existing collection has another.
	Dim int
	// Index is the vector index Open builds when the collection has none.
	// Default IndexDefault (HNSW, or AUTOINDEX if the server refuses HNSW).
	// Metric is always COSINE.
	Index IndexType
	// M and EfConstruction are the HNSW build parameters.
	// Defaults 16 and 200.
	M              int
	EfConstruction int
	// SearchEf is the HNSW search breadth; a search uses max(SearchEf, k).
	// Default 128.
	SearchEf int
	// Timeout bounds each call to Milvus (one Upsert batch, one Search...).
	// Keep it well under a job's lease so a hung server turns into a retry,
	// not a lost lease. Default 10 s.
	Timeout time.Duration
	// OpenTimeout bounds Open as a whole: connecting, creating the
	// collection and index, and loading it. Default 1 min.
	OpenTimeout time.Duration
	// Consistency is the level of Search and Count, and of the collection
	// Open creates. Default Bounded; tests use Strong.
	Consistency Consistency
}

func (c *Config) setDefaults() {
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.EfConstruction == 0 {
		c.EfConstruction = DefaultEfConstruction
	}
	if c.SearchEf == 0 {
		c.SearchEf = DefaultSearchEf
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.Consistency == "" {
		c.Consistency = DefaultConsistency
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is required"))
	}
	if !collectionName.MatchString(c.Collection) {
		errs = append(errs, fmt.Errorf("collection %q must be a letter or '_' then letters, digits or '_'", c.Collection))
	}
	if c.Dim < 2 || c.Dim > maxDim {
		errs = append(errs, fmt.Errorf("dim %d must be in [2, %d]", c.Dim, maxDim))
	}
	switch c.Index {
	case IndexDefault, IndexHNSW, IndexAuto:
	default:
		errs = append(errs, fmt.Errorf("index %q must be %q or %q", c.Index, IndexHNSW, IndexAuto))
	}
	if c.M < 4 || c.M > 64 {
		errs = append(errs, fmt.Errorf("m %d must be in [4, 64]", c.M))
	}
	if c.EfConstruction < 8 || c.EfConstruction > 512 {
		errs = append(errs, fmt.Errorf("ef construction %d must be in [8, 512]", c.EfConstruction))
	}
	if c.SearchEf < 1 || c.SearchEf > maxTopK {
		errs = append(errs, fmt.Errorf("search ef %d must be in [1, %d]", c.SearchEf, maxTopK))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, errors.New("cert and key go together"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if c.OpenTimeout < 0 {
		errs = append(errs, errors.New("open timeout must not be negative"))
	}
	if _, ok := c.Consistency.level(); !ok {
		errs = append(errs, fmt.Errorf("consistency %q must be strong, bounded, session or eventually", c.Consistency))
	}
	return errors.Join(errs...)
}

func (c Config) usesTLS() bool { return c.TLS || c.CA != "" || c.Cert != "" }

// keepaliveParams replace the SDK's keepalive (a ping after 5 s, in effect
// 10 s, without a read, also on an idle connection). A gRPC server's default
// enforcement (grpc-go's, and gRPC C++'s in milvus-lite) allows a ping every
// 5 min while it sends nothing, none at all while no call is open, and
// answers a client that pings more often with GOAWAY too_many_pings, which
// drops the connection and every call in flight on it: the SDK's defaults
// get it after 40 s of idleness. With these an idle connection never pings,
// and one with calls open pings only after 30 s with nothing read (3 × the
// default Config.Timeout of one call), so only a server silent for 2 min
// would hear enough pings to send GOAWAY; a connection that died unnoticed
// is still found within 40 s.
var keepaliveParams = keepalive.ClientParameters{
	Time:                30 * time.Second,
	Timeout:             10 * time.Second,
	PermitWithoutStream: false,
}

// dialOptions are the gRPC options of c: the SDK's defaults with our
// keepalive (keepaliveParams; a later option overrides an earlier one) and,
// with TLS, its credentials (TLS 1.2 and up, the CA and client certificate
// of c). Without TLS the SDK adds plain credentials, or TLS for an
// https:// Addr.
func (c Config) dialOptions() ([]grpc.DialOption, error) {
	opts := append(slices.Clone(client.DefaultGrpcOpts), grpc.WithKeepaliveParams(keepaliveParams))
	if !c.usesTLS() {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CA)
		}
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc))), nil
}

// String describes c without its password.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("milvus.Config{Addr:%q Username:%q Password:%q TLS:%t CA:%q Cert:%q Key:%q DBName:%q Collection:%q Dim:%d Index:%q M:%d EfConstruction:%d SearchEf:%d Timeout:%s OpenTimeout:%s Consistency:%q}",
		c.Addr, c.Username, pw, c.usesTLS(), c.CA, c.Cert, c.Key, c.DBName, c.Collection, c.Dim, c.Index, c.M, c.EfConstruction, c.SearchEf, c.Timeout, c.OpenTimeout, c.Consistency)
}

// GoString keeps %#v from printing the password too.
func (c Config) GoString() string { return c.String() }
