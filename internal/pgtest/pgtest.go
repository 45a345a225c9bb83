// Package pgtest starts throwaway PostgreSQL servers for tests: initdb on a
// temporary directory, the postgres server as a child process listening
// only on a Unix socket in that directory (so there is no port to collide
// on), everything removed when it stops.
//
// A test binary shares one server (Shared) and gives each test its own
// database (NewDatabase). Wrap testing.M with Main in TestMain so the server
// stops after the last test:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m).Run()) }
//
// Tests of outages stop the server and start it again on the same data and
// socket (StopServer, CrashServer, StartServer, Restart); they should use a
// cluster of their own (Start) rather than the shared one.
//
// The server binaries (initdb, postgres) are found through $PGTEST_BINDIR,
// pg_config --bindir, $PATH, or the usual install directories
// (/usr/lib/postgresql/*/bin and others). When they are missing, Shared
// skips the test, unless CI=true, where it fails it: a CI run that silently
// skips its database tests proves nothing.
//
// initdb and postgres refuse to run as root. Under root the server runs as
// $PGTEST_RUNAS, else the "postgres" user if there is one, else "nobody"
// (the Go process sets the child's credentials itself, so neither su nor
// sudo is needed), with its directory under /tmp owned by that user.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned by Start when the server binaries are not found.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found")

// Superuser is the role the cluster is created with (trust authentication).
const Superuser = "postgres"

// port is only the number in the socket's file name: the server does not
// listen on TCP.
const port = 5432

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	// BinDir is where the server binaries were found.
	BinDir string
	// Version is the server's major version (for example "15").
	Version string

	dir     string // temporary root: data/, the socket, the log
	dataDir string
	cred    *syscall.Credential
	stop    sync.Once
	stopErr error
	dbSeq   atomic.Int64

	mu     sync.Mutex // guards server and closed
	server *server    // the running server process, nil while it is down
	closed bool       // Stop was called: no more StartServer
}

// server is one run of the postgres process.
type server struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process ends
	waitErr error
}

// FindBinaries returns the directory holding initdb and postgres:
// $PGTEST_BINDIR when set (and nothing else), else the first of pg_config
// --bindir, $PATH and the usual install directories that has both.
func FindBinaries() (string, error) {
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
		return "", fmt.Errorf("%w in PGTEST_BINDIR %s", ErrNoPostgres, dir)
	}
	var candidates []string
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, filepath.Dir(initdb))
	}
	var globbed []string
	for _, pattern := range []string{
		"/usr/lib/postgresql/*/bin",
		"/usr/pgsql-*/bin",
		"/usr/local/pgsql/bin",
		"/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin",
		"/opt/homebrew/bin",
		"/usr/local/bin",
		"/usr/bin",
	} {
		matches, _ := filepath.Glob(pattern)
		// Newest major version first.
		slices.SortFunc(matches, func(a, b string) int { return versionOf(b) - versionOf(a) })
		globbed = append(globbed, matches...)
	}
	candidates = append(candidates, globbed...)
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

// versionOf reads the first number in a path (/usr/lib/postgresql/15/bin
// gives 15), 0 when none.
func versionOf(path string) int {
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r < '0' || r > '9' }) {
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start creates a cluster in a new temporary directory and starts its
// server. Stop it with Stop.
func Start(ctx context.Context) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	parent := ""
	if cred != nil {
		parent = "/tmp" // os.TempDir may sit under a directory the server user cannot enter
	}
	dir, err := os.MkdirTemp(parent, "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{BinDir: bin, dir: dir, dataDir: filepath.Join(dir, "data"), cred: cred}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: handing %s to the server user: %w", dir, err)
		}
	}
	initdb := c.command(ctx, cred, "initdb",
		"-D", c.dataDir, "-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, tail(out))
	}
	if v, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		c.Version = strings.TrimSpace(string(v))
	}
	if err := c.StartServer(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// StartServer starts the server again after StopServer or CrashServer, on
// the same data and the same socket, so connection strings handed out
// before still work. It returns once the server accepts connections (after
// crash recovery, when it crashed). It does nothing when the server runs.
func (c *Cluster) StartServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("pgtest: the cluster was stopped for good")
	}
	if c.server != nil {
		return nil
	}
	logPath := filepath.Join(c.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close()
	if c.cred != nil {
		_ = logFile.Chown(int(c.cred.Uid), int(c.cred.Gid))
	}
	// Not CommandContext: the server must outlive the context that started
	// it; StopServer, CrashServer and Stop end it.
	cmd := c.command(context.Background(), c.cred, "postgres",
		"-D", c.dataDir,
		"-k", c.dir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		// fsync=off alone: a commit still reaches the operating system
		// before it is acknowledged, so a crashed (not a powered-off)
		// server keeps every commit it acknowledged, as a real one does.
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		"-c", "timezone=UTC",
		"-c", "log_min_messages=warning",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without stopping the server, the server
	// shuts down at once instead of lingering.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	srv := &server{cmd: cmd, exited: make(chan struct{})}
	go func() {
		srv.waitErr = cmd.Wait()
		close(srv.exited)
	}()
	if err := c.waitReady(ctx, srv, 60*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-srv.exited
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("pgtest: postgres did not start: %w\n%s", err, tail(log))
	}
	c.server = srv
	return nil
}

// StopServer shuts the server down (fast shutdown: sessions are ended,
// their transactions rolled back, a checkpoint written) and keeps its data
// for StartServer. Clients see their connections end and new ones refused
// until the server is back. It does nothing when the server is down.
func (c *Cluster) StopServer(ctx context.Context) error {
	return c.halt(ctx, syscall.SIGINT)
}

// CrashServer ends the server as a crash would (immediate shutdown: every
// backend quits at once, nothing is checkpointed, and the next StartServer
// runs crash recovery, which also skips the sequence values logged ahead).
// It keeps the data for StartServer.
func (c *Cluster) CrashServer(ctx context.Context) error {
	return c.halt(ctx, syscall.SIGQUIT)
}

// Restart stops the server (fast shutdown) and starts it again.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.StopServer(ctx); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// PID returns the process id of the running server (the postmaster), 0
// while it is down.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return 0
	}
	return c.server.cmd.Process.Pid
}

// halt sends sig to the server and waits for it to exit, killing it when
// ctx ends first.
func (c *Cluster) halt(ctx context.Context, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := c.server
	if srv == nil {
		return nil
	}
	c.server = nil
	_ = srv.cmd.Process.Signal(sig)
	select {
	case <-srv.exited:
		return nil
	case <-ctx.Done():
		_ = srv.cmd.Process.Kill()
		<-srv.exited
		return fmt.Errorf("pgtest: the server did not stop in time, killed it: %w", ctx.Err())
	}
}

// command prepares one of the server binaries, run as the server user when
// cred is set.
func (c *Cluster) command(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir, "LC_ALL=C", "LANG=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// serverCredential is nil when the process may run the server itself, or
// the credential of an unprivileged user when it runs as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	names := []string{"postgres", "nobody"}
	if name := os.Getenv("PGTEST_RUNAS"); name != "" {
		names = []string{name}
	}
	for _, name := range names {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("pgtest: running as root, and none of the users %q exists to run the server as (initdb refuses root; set PGTEST_RUNAS)", names)
}

// waitReady waits until the server accepts connections.
func (c *Cluster) waitReady(ctx context.Context, srv *server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		last = err
		select {
		case <-srv.exited:
			return fmt.Errorf("the server exited: %v", srv.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ConnString returns a keyword/value connection string for database
// dbname, as the superuser over the cluster's Unix socket.
func (c *Cluster) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", connValue(c.dir), port, connValue(Superuser), connValue(dbname))
}

// connValue quotes a keyword/value connection string value, so a socket
// directory under a TMPDIR with spaces still works.
func connValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// CreateDatabase creates database name.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, ending its sessions first.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: dropping database %s: %w", name, err)
	}
	return nil
}

// NewDatabase creates a database of its own for tb, dropped when tb ends,
// and returns its connection string. The drop ends the database's remaining
// sessions, so a pool left open does not block it.
func (c *Cluster) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), c.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateDatabase(ctx, name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			tb.Error(err)
		}
	})
	return c.ConnString(name)
}

// Stop shuts the server down (fast shutdown, then a kill after 15 s) and
// removes its directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stop.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = c.halt(ctx, syscall.SIGINT)
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}

func tail(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return b
}

var shared struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

// Shared returns the test binary's cluster, starting it on first use. When
// the server binaries are missing it skips tb, or fails it under CI=true;
// any other failure to start fails tb.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.cluster, shared.err = Start(ctx)
	})
	switch {
	case shared.err == nil:
		return shared.cluster
	case errors.Is(shared.err, ErrNoPostgres) && os.Getenv("CI") != "true":
		tb.Skipf("SKIPPED, NO POSTGRES: %v (install a PostgreSQL server or set PGTEST_BINDIR; under CI=true this fails)", shared.err)
	default:
		tb.Fatal(shared.err)
	}
	return nil
}

// Main wraps m so that running it stops the shared cluster after the last
// test. Its Run has the signature goleak.VerifyTestMain wants.
func Main(m *testing.M) interface{ Run() int } {
	return runner{m}
}

type runner struct{ m *testing.M }

func (r runner) Run() int {
	code := r.m.Run()
	if shared.cluster != nil {
		if err := shared.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}
