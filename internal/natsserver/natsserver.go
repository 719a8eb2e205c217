// Package natsserver runs an in-process nats-server with JetStream: the
// embedded default of `apiary serve` and the per-test server of every NATS
// test.
//
// By default the server opens no port at all: clients reach it only from
// inside the process, through InProcessConn (nats.InProcessServer(srv)), so
// no other local process can read or write its streams and buckets. When a
// port is needed (Listen, or a Cluster), every client must present a user
// and password generated at start; the URL that carries them is returned by
// URL and is never logged.
package natsserver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded server.
type Config struct {
	// StoreDir is where JetStream keeps its streams. Required; one server
	// at a time (a second one on it fails with a Conflict).
	StoreDir string
	// Listen opens a client port on Host:Port, guarded by a user and
	// password generated at start. Default false: no port, in-process
	// clients only. A Cluster always listens.
	Listen bool
	// Host defaults to 127.0.0.1.
	Host string
	// Port defaults to -1: a free port, chosen by the server.
	Port int
	// SyncAlways makes JetStream fsync every write before acknowledging it,
	// so an acknowledged message survives a crash. Default true in serve.
	SyncAlways bool
	// ReadyTimeout bounds start-up; default 15 s.
	ReadyTimeout time.Duration
	// Name names the server; default "apiary-embedded". Servers of one
	// cluster need distinct names.
	Name string
	// Cluster, when its Name is set, joins this server to a JetStream
	// cluster (tests run three in one process to exercise replicas).
	Cluster Cluster
}

// Cluster is the route configuration of a clustered server.
type Cluster struct {
	Name   string   // cluster name, the same on every node
	Port   int      // route listen port on Host
	Routes []string // nats-route://host:port of every node
	// Secret is the password every node presents to the others' route
	// ports (NewSecret makes one). Required: routes are never anonymous.
	Secret string
}

// Server is a running embedded nats-server.
type Server struct {
	srv  *server.Server
	url  string   // client URL with its credentials; "" without a port
	lock *os.File // held on StoreDir while the server runs
}

// routeUser is the user name nodes of a cluster present to each other.
const routeUser = "apiary-route"

// NewSecret returns 32 random bytes in hex: a generated password.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("natsserver: secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Start runs a nats-server with JetStream and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 15 * time.Second
	}
	if cfg.Name == "" {
		cfg.Name = "apiary-embedded"
	}
	listen := cfg.Listen || cfg.Cluster.Name != ""
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               cfg.Host,
		Port:               cfg.Port,
		DontListen:         !listen,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              os.Getenv("APIARY_NATS_DEBUG") == "",
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	var user, password string
	if listen {
		var err error
		if password, err = NewSecret(); err != nil {
			return nil, err
		}
		user = "apiary"
		opts.Username, opts.Password = user, password
	}
	if cfg.Cluster.Name != "" {
		if cfg.Cluster.Secret == "" {
			return nil, errors.New("natsserver: Cluster.Secret is required")
		}
		opts.Cluster = server.ClusterOpts{
			Name: cfg.Cluster.Name, Host: cfg.Host, Port: cfg.Cluster.Port,
			Username: routeUser, Password: cfg.Cluster.Secret,
		}
		for _, r := range cfg.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				// Not %w: url's error repeats the route.
				return nil, fmt.Errorf("natsserver: route %d does not parse", len(opts.Routes))
			}
			u.User = url.UserPassword(routeUser, cfg.Cluster.Secret)
			opts.Routes = append(opts.Routes, u)
		}
	}
	lock, err := lockStore(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("natsserver: new: %w", err)
	}
	if !opts.NoLog {
		srv.ConfigureLogger()
	}
	go srv.Start()
	out := &Server{srv: srv, lock: lock}
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		out.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready after %s", cfg.ReadyTimeout)
	}
	if listen {
		u, err := url.Parse(srv.ClientURL())
		if err != nil {
			out.Shutdown()
			return nil, fmt.Errorf("natsserver: client url: %w", err)
		}
		u.User = url.UserPassword(user, password)
		out.url = u.String()
	}
	return out, nil
}

// URL is the client URL with its generated user and password, e.g.
// nats://apiary:<password>@127.0.0.1:4222: a secret, never to be logged.
// It is "" when the server has no port.
func (s *Server) URL() string { return s.url }

// Addr is the client listener's address; nil when the server has no port.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// InProcessConn opens a client connection inside the process, with no port
// involved; it makes Server a nats.InProcessConnProvider, so
// nats.Connect("", nats.InProcessServer(srv)) connects to it.
func (s *Server) InProcessConn() (net.Conn, error) { return s.srv.InProcessConn() }

// Shutdown stops the server, waits for it to finish and releases its store.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	unlock(s.lock)
}

func unlock(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}
