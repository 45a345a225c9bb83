package sheen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
)

// signingTransport is where every request to the worker is signed. It sits
// inside the retry loop (it is the retry client's HTTP transport), so each
// attempt waits for the rate limiter, gets a fresh timestamp, nonce and
// signature, and reports its response headers back to the limiter.
type signingTransport struct {
	base    http.RoundTripper
	signer  *signer
	limiter *adaptiveLimiter
}

type bodyKey struct{}

// withBody records the exact bytes of a call's body for the signer, so the
// transport need not read and rebuild the body on every attempt.
func withBody(ctx context.Context, body []byte) context.Context {
	return context.WithValue(ctx, bodyKey{}, body)
}

// RoundTrip implements http.RoundTripper.
func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, ok := req.Context().Value(bodyKey{}).([]byte)
	if !ok && req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			req.Body.Close()
			return nil, err
		}
		req.Body.Close()
	}
	release, err := t.limiter.acquire(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &clientAbort{err}
	}
	signed := req.Clone(req.Context())
	if !ok && body != nil {
		signed.Body = io.NopCloser(bytes.NewReader(body))
	}
	if err := t.signer.sign(signed.Header, signed.Method, signed.URL.RequestURI(), body); err != nil {
		release(nil)
		return nil, &clientAbort{err}
	}
	resp, err := t.base.RoundTrip(signed)
	release(resp)
	return resp, err
}

// redactedError describes a transport error without the URL it carries.
func redactedError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
