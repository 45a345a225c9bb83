package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/sheenhttp"
)

// maxCapture caps the request verify reads: the worker's body limit plus
// room for the request line and headers.
const maxCapture = sheen.MaxRequestBody + 64<<10

type verifyFlags struct {
	file     string
	sample   bool
	acceptV1 bool
	at       string
}

func (a *app) verifyCommand() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify [--file FILE] [--accept-v1] [--at WHEN]",
		Short: "Check the signature of a captured request (exit 3 when refused)",
		Long: `Read one HTTP request in wire format (request line, headers, blank line,
body) from stdin or --file and check its signature as the worker would,
with the configured secret (` + sheen.EnvSecret + ` or --secret-file; ` + sheen.EnvSecretV2 + `)
and scheme (--signing or ` + sheen.EnvSigning + `; when neither is set, the scheme the
request's headers show). Prints the verdict; exits 0 when the signature is
valid and 3 when the worker would refuse the request.

Timestamped signatures are checked against this machine's clock, as the
worker does (120 s either way); --at checks them at another time: RFC 3339,
Unix seconds, or "signed" (the request's own timestamp: the signature
alone). --sample verifies a request this command signs itself, to see the
format and check a secret and scheme end to end (with --fake: the fake's).`,
		GroupID: groupOther,
		Args:    exactArgs(),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			return a.verify(ctx, f)
		}),
	}
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "read the request from FILE (default: stdin)")
	cmd.Flags().BoolVar(&f.sample, "sample", false, "verify a sample request signed with the configured secret and scheme")
	cmd.Flags().BoolVar(&f.acceptV1, "accept-v1", false, "with dual signing, also accept a valid v1 signature alone (the worker's rollout window)")
	cmd.Flags().StringVar(&f.at, "at", "", `check timestamps as of WHEN: RFC 3339, Unix seconds, or "signed"`)
	return cmd
}

// verifyKeys are the secrets and scheme a request is checked with.
type verifyKeys struct {
	secret, secretV2 string
	scheme           sheen.Signing
	schemeSet        bool
	schemeFrom       string
}

func (a *app) verifyKeys() (verifyKeys, error) {
	var k verifyKeys
	if a.fake {
		if _, err := a.connect(); err != nil {
			return k, err
		}
		return verifyKeys{secret: a.fakeEnv.srv.Secret, scheme: sheen.SigningDual, schemeSet: true, schemeFrom: "the fake worker"}, nil
	}
	switch {
	case a.secretFile != "":
		s, err := readSecretFile(a.secretFile)
		if err != nil {
			return k, err
		}
		k.secret = s
	case os.Getenv(sheen.EnvSecret) != "":
		k.secret = os.Getenv(sheen.EnvSecret)
	default:
		return k, usagef("no shared secret to verify with: set %s or pass --secret-file (or try --fake)", sheen.EnvSecret)
	}
	k.secretV2 = os.Getenv(sheen.EnvSecretV2)
	// Checked here, so the error names the variable rather than the
	// Verifier's or the SDK's field.
	for _, v := range []struct{ name, secret string }{{sheen.EnvSecret, k.secret}, {sheen.EnvSecretV2, k.secretV2}} {
		if v.secret != "" && len(v.secret) < sheen.MinSecretLength && (v.name != sheen.EnvSecret || a.secretFile == "") {
			return k, usagef("%s is %d characters; it must be at least %d", v.name, len(v.secret), sheen.MinSecretLength)
		}
	}
	name, from := a.signing, "--signing"
	if name == "" {
		name, from = os.Getenv(sheen.EnvSigning), sheen.EnvSigning
	}
	if name != "" {
		var s sheen.Signing
		if err := s.UnmarshalText([]byte(name)); err != nil {
			return k, usagef("%s: %v", from, err)
		}
		k.scheme, k.schemeSet, k.schemeFrom = s, true, from
	}
	return k, nil
}

func (a *app) verify(ctx context.Context, f verifyFlags) error {
	keys, err := a.verifyKeys()
	if err != nil {
		return err
	}
	var raw []byte
	if f.sample {
		if f.file != "" {
			return usagef("--sample signs its own request: drop --file")
		}
		if raw, err = sampleRequest(ctx, keys); err != nil {
			return err
		}
		a.notef("A sample request, signed with the configured secret (signatures redacted here):\n%s\n", redactSignatures(raw))
	} else if raw, err = a.readCapture(f.file); err != nil {
		return err
	}
	req, body, err := parseCapture(raw)
	if err != nil {
		return err
	}
	if !keys.schemeSet {
		keys.scheme, keys.schemeFrom = detectScheme(req.Header), "the request's headers"
	}
	now, err := verifyClock(f.at, req.Header)
	if err != nil {
		return err
	}
	v := verdictOf(req, body, keys, f.acceptV1, now)
	if v.misconfigured != nil {
		return &usageError{err: v.misconfigured}
	}
	a.printVerdict(v)
	if !v.Valid {
		return &answered{code: exitAuth}
	}
	return nil
}

func (a *app) readCapture(file string) ([]byte, error) {
	var r io.Reader = a.stdin
	if file != "" && file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return nil, usagef("--file: %v", err)
		}
		defer fh.Close()
		r = fh
	} else if isTerminalReader(a.stdin) {
		return nil, usagef("verify reads a captured request from stdin or --file (try --sample to see one)")
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCapture+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCapture {
		return nil, usagef("the request is over %d bytes, more than the worker accepts", maxCapture)
	}
	return b, nil
}

func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && termIsTerminal(int(f.Fd()))
}

// parseCapture reads a request in wire format. A body without
// Content-Length (a hand-edited capture) is whatever follows the headers;
// nothing but white space there means no body.
func parseCapture(raw []byte) (*http.Request, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, usagef("not an HTTP request in wire format (request line, headers, blank line, body): %v", err)
	}
	var body []byte
	if req.ContentLength <= 0 && len(req.TransferEncoding) == 0 {
		rest, _ := io.ReadAll(br)
		if len(bytes.TrimSpace(rest)) > 0 {
			body = rest
		}
	} else if body, err = io.ReadAll(req.Body); err != nil {
		return nil, nil, usagef("reading the request's body: %v", err)
	}
	return req, body, nil
}

// detectScheme names the scheme a request's headers show.
func detectScheme(h http.Header) sheen.Signing {
	switch {
	case h.Get(sheen.HeaderSignatureV2) != "":
		return sheen.SigningDual
	case h.Get(sheen.HeaderTimestamp) != "":
		return sheen.SigningTimestamp
	}
	return sheen.SigningBodyPath
}

// verifyClock is the clock timestamps are checked against (--at).
func verifyClock(at string, h http.Header) (func() time.Time, error) {
	switch {
	case at == "":
		return time.Now, nil
	case at == "signed":
		sec, err := strconv.ParseInt(h.Get(sheen.HeaderTimestamp), 10, 64)
		if err != nil {
			return nil, usagef("--at signed: the request has no usable %s header", sheen.HeaderTimestamp)
		}
		t := time.Unix(sec, 0)
		return func() time.Time { return t }, nil
	}
	if sec, err := strconv.ParseInt(at, 10, 64); err == nil {
		t := time.Unix(sec, 0)
		return func() time.Time { return t }, nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return nil, usagef(`--at: want RFC 3339, Unix seconds or "signed", not %q`, at)
	}
	return func() time.Time { return t }, nil
}

// verdict is what verify found.
type verdict struct {
	Valid      bool   `json:"valid"`
	Method     string `json:"method"`
	Target     string `json:"target"`
	Scheme     string `json:"scheme"`
	SchemeFrom string `json:"schemeFrom"`
	// Signature says which signature was valid: v2 (dual), v1 (dual with
	// --accept-v1), timestamp or bodypath.
	Signature string `json:"signature,omitempty"`
	Status    int    `json:"status,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	SignedAt  string `json:"signedAt,omitempty"`
	Hint      string `json:"hint,omitempty"`

	signedAt      time.Time
	misconfigured error
}

func verdictOf(req *http.Request, body []byte, k verifyKeys, acceptV1 bool, now func() time.Time) verdict {
	target := req.RequestURI
	if !strings.HasPrefix(target, "/") {
		target = req.URL.RequestURI()
	}
	v := verdict{Method: req.Method, Target: target, Scheme: k.scheme.String(), SchemeFrom: k.schemeFrom}
	if sec, err := strconv.ParseInt(req.Header.Get(sheen.HeaderTimestamp), 10, 64); err == nil {
		v.signedAt = time.Unix(sec, 0)
		v.SignedAt = stamp(v.signedAt)
	}
	// Each check gets a Verifier of its own, so a nonce used up by one
	// does not make the next see a replay.
	check := func(v1 bool) error {
		ver := &sheenhttp.Verifier{Secret: k.secret, SecretV2: k.secretV2, Scheme: k.scheme, AcceptV1: v1, Now: now}
		return ver.Verify(req.Method, target, req.Header, body)
	}
	dual := k.scheme == sheen.SigningDual
	err := check(false)
	switch {
	case err == nil && dual:
		v.Valid, v.Signature = true, "v2"
		return v
	case err == nil:
		v.Valid, v.Signature = true, k.scheme.String()
		return v
	}
	var auth *sheen.AuthError
	if !errors.As(err, &auth) {
		v.misconfigured = err
		return v
	}
	v1Valid := dual && auth.StatusCode == http.StatusForbidden && check(true) == nil
	if v1Valid && acceptV1 {
		v.Valid, v.Signature = true, "v1"
		v.Hint = "the v2 signature is missing or invalid; the v1 signature alone was accepted (--accept-v1)"
		return v
	}
	v.Status, v.Code, v.Message = auth.StatusCode, string(auth.Code), auth.Message
	v.Hint = verifyHint(auth, v, k, v1Valid, now())
	return v
}

func verifyHint(auth *sheen.AuthError, v verdict, k verifyKeys, v1Valid bool, now time.Time) string {
	switch {
	case v1Valid:
		return "its v1 signature is valid: the deployed worker accepts that during its rollout window (--accept-v1)"
	case auth.Code.Equal(sheen.CodeTimestampOutOfRange) && !v.signedAt.IsZero():
		return fmt.Sprintf("signed %s away from the time checked; --at signed checks the signature alone", human(now.Sub(v.signedAt).Abs()))
	case auth.Code.Equal(sheen.CodeMissingSignature):
		return "no " + sheen.HeaderSignature + " header for the " + k.scheme.String() + " scheme"
	case auth.Code.Equal(sheen.CodeInvalidSignature):
		return "the signature does not match this secret, scheme, method, target and body (a body changed by a proxy or an editor breaks it)"
	}
	return ""
}

func (a *app) printVerdict(v verdict) {
	if a.json {
		a.writeJSON(v)
		return
	}
	if v.Valid {
		a.printf("valid: %s %s\n", v.Method, v.Target)
	} else {
		a.printf("invalid: %s %s: the worker would answer %d %s (%s)\n", v.Method, v.Target, v.Status, v.Code, v.Message)
	}
	a.printf("  scheme     %s (from %s)\n", v.Scheme, v.SchemeFrom)
	if v.Signature != "" {
		a.printf("  signature  %s\n", v.Signature)
	}
	if !v.signedAt.IsZero() {
		a.printf("  signed at  %s (%s ago)\n", local(v.signedAt), human(time.Since(v.signedAt)))
	}
	if v.Hint != "" {
		a.printf("  note       %s\n", v.Hint)
	}
}

// captureTransport answers every request with an empty JSON object and
// keeps the last request it saw in wire format, signed headers included.
type captureTransport struct {
	wire []byte
}

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	c.wire = wireFormat(r, body)
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"sufficient":true}`)),
		ContentLength: -1, Request: r,
	}, nil
}

// wireFormat writes a request as it goes on the wire (HTTP/1.1, headers
// in a stable order).
func wireFormat(r *http.Request, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.URL.RequestURI(), r.URL.Host)
	h := r.Header.Clone()
	h.Del("Content-Length")
	_ = h.WriteSubset(&b, nil)
	if len(body) > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// sampleRequest signs a check-sufficient call with the SDK, as a client
// configured with these keys would send it, and returns it in wire format.
func sampleRequest(ctx context.Context, k verifyKeys) ([]byte, error) {
	scheme := k.scheme
	if !k.schemeSet {
		scheme = sheen.SigningDual
	}
	capture := &captureTransport{}
	opts := []sheen.Option{
		sheen.WithBaseURL("https://worker.example"), sheen.WithSecret(k.secret), sheen.WithSigning(scheme),
		sheen.WithHTTPClient(&http.Client{Transport: capture}), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1, MaxWait: time.Second}), sheen.WithUserAgent(userAgent),
	}
	if k.secretV2 != "" {
		opts = append(opts, sheen.WithSecretV2(k.secretV2))
	}
	c, err := sheen.NewWorkerClient(opts...)
	if err != nil {
		return nil, &usageError{err: err}
	}
	in := map[string]any{"userId": fakeDemoUser, "operationType": "main_build", "projectSize": "small", "isUpdate": false}
	if err := c.Do(ctx, http.MethodPost, "/v1/billing/check-sufficient", in, nil); err != nil {
		return nil, err
	}
	return capture.wire, nil
}

// redactSignatures hides the signature headers of a request in wire
// format, for showing it.
func redactSignatures(raw []byte) string {
	lines := strings.Split(string(raw), "\r\n")
	for i, l := range lines {
		if l == "" {
			break // the body follows
		}
		name, _, ok := strings.Cut(l, ":")
		if ok && (strings.EqualFold(name, sheen.HeaderSignature) || strings.EqualFold(name, sheen.HeaderSignatureV2)) {
			lines[i] = name + ": REDACTED"
		}
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}
