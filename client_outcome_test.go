package sheen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// Header values the caller gives that no HTTP request may carry (CR, LF
// and other control characters) are refused before anything is sent, as a
// *ValidationError naming the header and not quoting the value: a billed
// POST is not reported as maybe acted on, a GET is not tried four times.
func TestCallHeadersRefusedBeforeSending(t *testing.T) {
	var sent atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return jsonResponse(r, 200, `{}`), nil
	}))
	for _, tc := range []struct {
		name  string
		opt   CallOption
		field string
	}{
		{"LF in a header", WithHeader("X-Note", "a\nsecret"), "header X-Note"},
		{"CR in a header", WithHeader("X-Note", "a\rsecret"), "header X-Note"},
		{"NUL in a header", WithHeader("X-Note", "a\x00secret"), "header X-Note"},
		{"DEL in a header", WithHeader("X-Note", "a\x7fsecret"), "header X-Note"},
		{"space in a header name", WithHeader("X Note", "v"), "header X Note"},
		{"colon in a header name", WithHeader("X-Note:", "v"), "header X-Note:"},
		{"empty header name", WithHeader("", "v"), "header "},
		{"CRLF in the correlation id", WithCorrelationID("id\r\nX-Evil: secret"), "header X-Correlation-Id"},
		{"LF in the idempotency key", WithIdempotencyKey("key\nsecret"), "header Idempotency-Key"},
	} {
		for _, method := range []string{"POST", "GET"} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				var in any
				if method == "POST" {
					in = map[string]int{"a": 1}
				}
				var resp Response
				err := c.Do(context.Background(), method, "/v1/update-project", in, nil, tc.opt, WithResponse(&resp))
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Field != tc.field {
					t.Fatalf("%v; want a *ValidationError on %q", err, tc.field)
				}
				if errors.Is(err, ErrOutcomeUnknown) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("%v: must not be outcome unknown nor quote the value", err)
				}
			})
		}
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
	// Tabs and bytes outside ASCII are allowed in values, as net/http sends them.
	if err := c.Do(context.Background(), "GET", "/v1/x", nil, nil, WithHeader("X-Note", "a\tcafé"), WithCorrelationID("id-1")); err != nil || sent.Load() != 1 {
		t.Fatalf("a valid header: %v after %d requests", err, sent.Load())
	}
}

// The header check refuses exactly what net/http's Transport refuses (it
// would refuse it only once the attempt is under way, which the retry rule
// cannot tell from a failure after sending), byte by byte, in names and
// values.
func TestHeaderCheckMatchesNetHTTP(t *testing.T) {
	errDial := errors.New("dialled: the transport accepted the header")
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return nil, errDial }}
	defer tr.CloseIdleConnections()
	netHTTPSends := func(name, value string) bool {
		req, err := http.NewRequest("GET", "http://worker.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[name] = []string{value}
		_, err = tr.RoundTrip(req)
		return errors.Is(err, errDial)
	}
	for b := range 256 {
		value, name := "a"+string([]byte{byte(b)})+"b", "X-"+string([]byte{byte(b)})
		if got, want := validHeaderValue(value), netHTTPSends("X-Note", value); got != want {
			t.Errorf("value with byte %#x: valid %v, net/http sends it %v", b, got, want)
		}
		if got, want := validHeaderName(name), netHTTPSends(name, "v"); got != want {
			t.Errorf("name with byte %#x: valid %v, net/http sends it %v", b, got, want)
		}
	}
}

// AI.Generate refuses the same headers before sending.
func TestGenerateRefusesBadHeaders(t *testing.T) {
	cc, err := newCallConfig([]CallOption{WithHeader("X-Note", "a\r\nb")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = GenerateRequest{UserID: "u1", ProjectID: "p1", Prompt: "hi"}.encode(cc)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "header X-Note" {
		t.Fatalf("%v; want a *ValidationError on the header", err)
	}
}

// An out that cannot receive the answer is refused before the request is
// sent (a billed POST would otherwise start a build whose answer is lost);
// nil out discards the answer.
func TestOutMustBeANonNilPointer(t *testing.T) {
	var sent atomic.Int32
	c := newTestClient(t, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return jsonResponse(r, 200, `{"buildId":"b1"}`), nil
	}))
	type answer struct{ BuildID string }
	var nilPointer *answer
	var nilRaw *[]byte
	for name, out := range map[string]any{
		"struct value":      answer{},
		"map value":         map[string]any{},
		"typed nil pointer": nilPointer,
		"nil *[]byte":       nilRaw,
	} {
		err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, out)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "out" {
			t.Errorf("%s: %v; want a *ValidationError on out", name, err)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
	var a answer
	if err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, &a); err != nil || a.BuildID != "b1" {
		t.Fatalf("pointer out: %v, %+v", err, a)
	}
	if err := c.Do(context.Background(), "POST", "/v1/update-project", map[string]int{"a": 1}, nil); err != nil {
		t.Fatalf("nil out: %v", err)
	}
}
