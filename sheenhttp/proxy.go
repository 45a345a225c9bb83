package sheenhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/bridge"
)

// ResourceKind names the kind of worker resource a proxied request names,
// for ProxyConfig.AuthorizeResource.
type ResourceKind string

// Resource kinds of the default proxy routes.
const (
	ResourceProject ResourceKind = "project"
	ResourceVersion ResourceKind = "version"
	ResourceBuild   ResourceKind = "build"
)

// ProxyConfig configures NewProxy.
type ProxyConfig struct {
	// Authorize returns the signed-in user of a browser request, from your
	// session. It is required. An error or an empty id answers 401 and
	// nothing reaches the worker. The id must be a valid worker id (no "/",
	// no control characters).
	Authorize func(r *http.Request) (userID string, err error)

	// AuthorizeResource, when set, is asked about every resource id a
	// request names (in its path or its JSON body) before it is sent:
	// return nil when userID may act on it. An error answers 403, or 404
	// when it matches ErrNotFound. It sees a projectId chosen for a new
	// project in create-preview too. Without it, the Unowned routes
	// (rebuild, versions list) are not served.
	AuthorizeResource func(r *http.Request, userID string, kind ResourceKind, id string) error

	// Prefix is the path the proxy is mounted under, such as "/api/worker"
	// for mux.Handle("/api/worker/", proxy): the proxy strips it and maps
	// /api/worker/v1/... to the worker's /v1/.... Leave it empty when the
	// prefix is already stripped (http.StripPrefix) or there is none.
	Prefix string

	// Routes is the allowlist; nil means DefaultProxyRoutes (without the
	// Unowned ones when AuthorizeResource is nil). Anything else answers
	// 404.
	Routes []ProxyRoute

	// CrossOrigin guards POST routes against cross-site requests (CSRF);
	// nil means a default http.CrossOriginProtection, which refuses
	// cross-origin browser requests that are not GET, HEAD or OPTIONS.
	CrossOrigin *http.CrossOriginProtection
}

// Codes in the JSON bodies of errors the proxy answers itself.
const (
	proxyCodeUnauthorized sheen.ErrorCode = "UNAUTHORIZED"
	proxyCodeForbidden    sheen.ErrorCode = "FORBIDDEN"
	proxyCodeCrossOrigin  sheen.ErrorCode = "CROSS_ORIGIN_REQUEST"
	proxyCodeNotFound     sheen.ErrorCode = "NOT_FOUND"
	proxyCodeBadPath      sheen.ErrorCode = "INVALID_PATH"
	proxyCodeBadMedia     sheen.ErrorCode = "FST_ERR_CTP_INVALID_MEDIA_TYPE"
	proxyCodeRateLimited  sheen.ErrorCode = "client_rate_limited"
	proxyCodeUnavailable  sheen.ErrorCode = "WORKER_UNAVAILABLE"
	proxyCodeSigning      sheen.ErrorCode = "PROXY_SIGNATURE_REJECTED"
)

// NewProxy returns a handler that forwards browser requests to the worker
// through client, so the shared secret never leaves the server. It is safe
// by construction:
//
//   - Authorize must name a user, else 401.
//   - Only the allowlisted routes pass (ProxyConfig.Routes), else 404. The
//     path is matched decoded, and refused (400 INVALID_PATH) when its raw
//     form has dot segments, empty segments, backslashes or percent-encoded
//     dots, slashes, backslashes, percent signs or control characters: the
//     proxy refuses rather than normalises. The path sent to the worker is
//     rebuilt from the route with every id escaped.
//   - A user id in the path, in the query (any key that reads userId when
//     case, "_" and "-" are ignored, duplicates included) or in the JSON body
//     (top-level "userId") must be the authorised user, else 403 FORBIDDEN;
//     where the route needs it and it is absent, it is filled in. A body with
//     a userId below the top level, or a key twice in one object, is
//     refused; the body sent is re-encoded the way JSON.stringify writes it.
//   - Requests to the worker carry only headers the proxy sets (no cookie,
//     Authorization, x-sheen-* or hop-by-hop header from the browser); a
//     browser's Idempotency-Key is scoped to the user. They are signed by
//     the client's signer and paced by its rate limiter, and are not
//     retried: the browser decides that. While the worker has asked the
//     client to pause (a 429, or a window with no quota left) the proxy
//     answers 429 client_rate_limited with Retry-After at once; otherwise a
//     request waits for quota as long as the client's maximum wait
//     (WithRetry) allows, then gets the same 429. Give the proxy a client of
//     its own with WithRetry(RetryConfig{MaxAttempts: 1, MaxWait: a few seconds}) to keep browsers from
//     waiting long, and a WithRateLimit that fits all your users.
//   - Bodies over 1 MiB answer 413 FST_ERR_CTP_BODY_TOO_LARGE, as the worker
//     would. Responses are streamed, with their status, Content-Type (JSON
//     only; anything else, or none, is served as text/plain),
//     X-Correlation-Id, Retry-After and rate-limit headers; no other worker
//     header reaches the browser, and every response is marked
//     Cache-Control: no-store and X-Content-Type-Options: nosniff.
//
// Errors the proxy answers itself have JSON bodies like the worker's:
// {"error": message, "code": code}, with codes UNAUTHORIZED (401),
// FORBIDDEN and CROSS_ORIGIN_REQUEST (403), NOT_FOUND (404), INVALID_PATH and
// BAD_REQUEST (400), FST_ERR_CTP_BODY_TOO_LARGE (413),
// FST_ERR_CTP_INVALID_MEDIA_TYPE (415, a body that is not application/json),
// client_rate_limited (429), WORKER_UNAVAILABLE (502) and INTERNAL_ERROR
// (500, when Authorize returns an id that is not a valid worker id).
//
// Mount it with mux.Handle("/api/worker/", proxy) and Prefix "/api/worker",
// or behind http.StripPrefix with no Prefix. An http.ServeMux cleans paths
// with dot segments or double slashes and redirects to the clean path before
// the proxy sees them; the proxy then checks the clean path like any other.
func NewProxy(client *sheen.WorkerClient, cfg ProxyConfig) (http.Handler, error) {
	c := hooks.Core(client)
	if c == nil {
		return nil, errors.New("sheenhttp: NewProxy: client is nil")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("sheenhttp: NewProxy: ProxyConfig.Authorize is required")
	}
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || checkRawProxyPath(prefix) != nil) {
		return nil, fmt.Errorf("sheenhttp: NewProxy: Prefix %q must be a clean absolute path such as /api/worker", cfg.Prefix)
	}
	routes, err := proxyRoutes(cfg)
	if err != nil {
		return nil, err
	}
	p := &proxy{
		c:                 c,
		client:            client,
		authorize:         cfg.Authorize,
		authorizeResource: cfg.AuthorizeResource,
		prefix:            prefix,
		base:              c.Base,
		routes:            routes,
		cop:               cfg.CrossOrigin,
	}
	if p.cop == nil {
		p.cop = http.NewCrossOriginProtection()
	}
	return p, nil
}

// proxyRoutes parses the configured routes, or the default ones (without
// the Unowned ones when there is no AuthorizeResource).
func proxyRoutes(cfg ProxyConfig) ([]*proxyRoute, error) {
	routes := cfg.Routes
	explicit := routes != nil
	if !explicit {
		routes = DefaultProxyRoutes()
	}
	var out []*proxyRoute
	for _, rt := range routes {
		pr, err := parseProxyRoute(rt)
		if err != nil {
			return nil, fmt.Errorf("sheenhttp: NewProxy: route %q: %w", rt.Pattern, err)
		}
		if rt.Unowned && cfg.AuthorizeResource == nil {
			if explicit {
				return nil, fmt.Errorf("sheenhttp: NewProxy: route %q is Unowned: it needs ProxyConfig.AuthorizeResource", rt.Pattern)
			}
			continue
		}
		out = append(out, pr)
	}
	return out, nil
}

type proxy struct {
	c                 *bridge.Core
	client            *sheen.WorkerClient // its limiter's snapshot; its Billing, told when a user's balance changed
	authorize         func(*http.Request) (string, error)
	authorizeResource func(*http.Request, string, ResourceKind, string) error
	prefix            string
	base              string // the worker's scheme, host and base path
	routes            []*proxyRoute
	cop               *http.CrossOriginProtection
}

// ServeHTTP implements http.Handler.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fw, no := p.check(w, r)
	if no != nil {
		p.answer(w, r, no)
		return
	}
	p.send(w, r, fw)
}

// answer writes a refusal as JSON.
func (p *proxy) answer(w http.ResponseWriter, r *http.Request, no *proxyRefusal) {
	if p.c.Logger.Enabled(r.Context(), slog.LevelDebug) {
		p.c.Logger.LogAttrs(r.Context(), slog.LevelDebug, "sheenhttp: proxy refused a request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", no.status), slog.String("code", string(no.code)))
	}
	writeError(w, no.status, no.code, no.message)
}
