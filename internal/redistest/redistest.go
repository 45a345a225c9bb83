// Package redistest starts throwaway Redis servers for tests and
// benchmarks: redis-server as a child process with no persistence, listening
// on a Unix socket in a temporary directory (no port to collide on) or, when
// asked, on a free loopback TCP port; everything is removed when it stops.
//
// A test binary shares one server (Shared) and gives each test its own key
// prefix (Prefix) or database number; wrap testing.M with Main in TestMain
// so the server stops after the last test:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m).Run()) }
//
// Tests of outages use a server of their own (Start) and stop it and start
// it again on the same address (StopServer, StartServer), or freeze it
// (Pause, Resume) to play a Redis that accepts connections but never
// answers.
//
// The server binary is $REDISTEST_SERVER when set, else redis-server on
// $PATH or in /usr/bin, /usr/sbin, /usr/local/bin. When it is missing,
// Shared skips the test loudly, unless CI=true, where it fails it: a CI run
// that silently skips its Redis tests proves nothing. .ci/run installs the
// Debian package redis-server when it is missing.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedis is returned by Start when redis-server is not found.
var ErrNoRedis = errors.New("redistest: redis-server not found (install the redis-server package or set REDISTEST_SERVER)")

// Server is a running throwaway Redis server.
type Server struct {
	// Binary is the redis-server that runs.
	Binary string

	network, addr string
	dir           string // temporary root: the socket and the log
	port          int    // 0 on a Unix socket
	stop          sync.Once
	stopErr       error
	seq           atomic.Int64

	mu     sync.Mutex
	proc   *process // nil while it is down
	paused bool
	closed bool
}

// process is one run of redis-server.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Options says how to start a server.
type Options struct {
	// TCP makes the server listen on a free port of 127.0.0.1 instead of a
	// Unix socket.
	TCP bool
}

// FindServer returns the path of redis-server.
func FindServer() (string, error) {
	if p := os.Getenv("REDISTEST_SERVER"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: REDISTEST_SERVER %s is not an executable", ErrNoRedis, p)
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin", "/opt/homebrew/bin"} {
		if p := filepath.Join(dir, "redis-server"); isExecutable(p) {
			return p, nil
		}
	}
	return "", ErrNoRedis
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start starts a server in a new temporary directory. Stop it with Stop.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := FindServer()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{Binary: bin, dir: dir, network: "unix", addr: filepath.Join(dir, "redis.sock")}
	if o.TCP {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.network, s.port, s.addr = "tcp", port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	if err := s.StartServer(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; StartServer then fails and says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Network is "unix" or "tcp", for redis.Options.Network.
func (s *Server) Network() string { return s.network }

// Addr is the socket path or host:port, for redis.Options.Addr.
func (s *Server) Addr() string { return s.addr }

// Options returns client options for the server (database db), with
// ContextTimeoutEnabled so contexts bound every command.
func (s *Server) Options(db int) *redis.Options {
	return &redis.Options{Network: s.network, Addr: s.addr, DB: db, ContextTimeoutEnabled: true}
}

// Client returns a client of database 0, closed when tb ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.Options(0))
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix no other test of this binary uses.
func (s *Server) Prefix(tb testing.TB) string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), s.seq.Add(1))
}

// StartServer starts the server again after StopServer, on the same
// address, with no data (it keeps none). It returns once the server answers
// PING. It does nothing when the server runs.
func (s *Server) StartServer(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("redistest: the server was stopped for good")
	}
	if s.proc != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", logPath,
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	if s.network == "unix" {
		args = append(args, "--unixsocket", s.addr, "--unixsocketperm", "700")
	}
	// Not CommandContext: the server outlives the context that started it.
	cmd := exec.Command(s.Binary, args...)
	cmd.Dir = s.dir
	// If the test binary dies without stopping the server, the server goes
	// with it instead of lingering.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := s.waitReady(ctx, p, 30*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("redistest: redis-server did not start: %w\n%s%s", err, tail(out.Bytes()), tail(log))
	}
	s.proc, s.paused = p, false
	return nil
}

// waitReady waits until the server answers PING.
func (s *Server) waitReady(ctx context.Context, p *process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Network: s.network, Addr: s.addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		last = c.Ping(pctx).Err()
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("the server exited: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopServer kills the server (its data goes with it, as nothing is
// persisted). Clients see their connections end and new ones refused until
// StartServer. It does nothing when the server is down.
func (s *Server) StopServer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	_ = p.cmd.Process.Kill()
	<-p.exited
	if s.network == "unix" {
		_ = os.Remove(s.addr)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open and commands
// are accepted by the kernel but never answered, as with a Redis that is
// overloaded or cut off by a dead network path. Resume undoes it.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errors.New("redistest: the server is not running")
	}
	s.paused = true
	return s.proc.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume lets a paused server go on.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || !s.paused {
		return nil
	}
	s.paused = false
	return s.proc.cmd.Process.Signal(syscall.SIGCONT)
}

// Stop kills the server and removes its directory. It is safe to call more
// than once.
func (s *Server) Stop() error {
	s.stop.Do(func() {
		_ = s.Resume()
		s.StopServer()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}

func tail(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	if len(b) > 0 {
		b = append(b, '\n')
	}
	return b
}

var shared struct {
	once   sync.Once
	server *Server
	err    error
}

// Available reports whether tests may use Redis: nil when redis-server was
// found, else the reason. Under CI=true a missing server is the test's
// failure; otherwise the test should skip, as Shared does.
func Available() error {
	_, err := FindServer()
	return err
}

// Skip skips tb loudly when redis-server is missing, or fails it under
// CI=true. It returns only when the server binary is there.
func Skip(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%v; under CI=true a missing Redis fails the test", err)
		}
		tb.Skipf("SKIPPED, NO REDIS: %v (under CI=true this fails)", err)
	}
}

// Shared returns the test binary's server, starting it on first use. When
// redis-server is missing it skips tb (loudly), or fails it under CI=true;
// any other failure to start fails tb.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	Skip(tb)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared.server, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.server
}

// Own starts a server for tb alone (for outage tests), stopped when tb
// ends; it skips or fails as Shared does when redis-server is missing.
func Own(tb testing.TB, o Options) *Server {
	tb.Helper()
	Skip(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Main wraps m so that running it stops the shared server after the last
// test. Its Run has the signature goleak.VerifyTestMain wants.
func Main(m *testing.M) interface{ Run() int } { return runner{m} }

type runner struct{ m *testing.M }

func (r runner) Run() int {
	code := r.m.Run()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}
