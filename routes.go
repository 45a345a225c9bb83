package sheen

import (
	"fmt"
	"strings"
)

// Routes of the Worker API that the SDK calls, as "METHOD /path" patterns in
// net/http.ServeMux syntax ({name} is one path segment). They are the names
// a route goes by everywhere: sheenhttp.ProxyRoute.Pattern, sheentest's
// Fault.Route, Server.Calls and Request.Route, and the golden answers in
// sheentest's fixtures. Each names the service method that calls it.
const (
	// RouteBalance is called by BillingService.Balance, RefreshBalance and WaitForBalance.
	RouteBalance = "GET /v1/billing/balance/{userId}"
	// RouteLegacyBalance is called by BillingService.LegacyBalance.
	RouteLegacyBalance = "GET /v1/billing/legacy-balance/{userId}"
	// RouteCheckSufficient is called by BillingService.CheckSufficient (and
	// by BuildsService.CreatePreview with WithPreBuildCheck).
	RouteCheckSufficient = "POST /v1/billing/check-sufficient"
	// RouteCheckBatch is called by BillingService.CheckBatch.
	RouteCheckBatch = "POST /v1/billing/check-sufficient-batch"
	// RouteUsage is called by BillingService.Usage.
	RouteUsage = "GET /v1/billing/usage/{userId}"
	// RouteBillingEvents is called by BillingService.History.
	RouteBillingEvents = "GET /v1/billing/events/{userId}"
	// RouteCreatePreview is called by BuildsService.CreatePreview.
	RouteCreatePreview = "POST /v1/create-preview-for-new-project"
	// RouteUpdateProject is called by BuildsService.UpdateProject.
	RouteUpdateProject = "POST /v1/update-project"
	// RouteRollback is called by BuildsService.Rollback.
	RouteRollback = "POST /v1/versions/rollback"
	// RouteRebuild is called by BuildsService.Rebuild and
	// ExportsService.RebuildMissing.
	RouteRebuild = "POST /v1/versions/{versionId}/rebuild"
	// RouteVersions is called by BuildsService.Versions.
	RouteVersions = "GET /v1/projects/{projectId}/versions"
	// RouteBuildEvents is called by BuildsService.Follow and Wait (unless
	// another EventSource is in use); the query carries userId and
	// lastEventId.
	RouteBuildEvents = "GET /v1/builds/{buildId}/events"
	// RouteBuildStatus is called by BuildsService.Status; the query carries
	// userId.
	RouteBuildStatus = "GET /v1/builds/{buildId}/status"
	// RouteExportProject is called by ExportsService.ProjectLink; the
	// query carries userId.
	RouteExportProject = "GET /v1/projects/{projectId}/export"
	// RouteDownloadVersion is called by ExportsService.VersionLink; the
	// query carries userId.
	RouteDownloadVersion = "GET /v1/versions/{versionId}/download"
	// RouteGenerate is called by AIService.Generate, on its own URL and
	// secret (WithGenerate). It is not one of the
	// /v1 routes Routes lists: it is signed apart and never proxied.
	RouteGenerate = "POST /generate"
)

// Routes returns every /v1 route the SDK calls, in the order of the
// constants above (billing, builds, build events, exports); RouteGenerate
// is apart.
func Routes() []string {
	return []string{
		RouteBalance, RouteLegacyBalance, RouteCheckSufficient, RouteCheckBatch, RouteUsage, RouteBillingEvents,
		RouteCreatePreview, RouteUpdateProject, RouteRollback, RouteRebuild, RouteVersions,
		RouteBuildEvents, RouteBuildStatus,
		RouteExportProject, RouteDownloadVersion,
	}
}

// expandRoute turns a route pattern and the values of its {params}, in
// order, into the method and the escaped path: each value checked by
// escapeID (not empty, no '/' or dot segment, at most MaxIDLength escaped)
// and named in the error after its parameter.
func expandRoute(route string, params ...string) (method, path string, err error) {
	method, pattern, _ := strings.Cut(route, " ")
	var sb strings.Builder
	sb.Grow(len(pattern) + 48)
	n := 0
	for rest := pattern; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			sb.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 || n >= len(params) {
			return "", "", fmt.Errorf("sheen: route %q needs more parameters", route)
		}
		sb.WriteString(rest[:i])
		esc, err := escapeID(rest[i+1:i+j], params[n])
		if err != nil {
			return "", "", err
		}
		sb.WriteString(esc)
		n++
		rest = rest[i+j+1:]
	}
	if n != len(params) {
		return "", "", fmt.Errorf("sheen: route %q takes %d parameters, got %d", route, n, len(params))
	}
	return method, sb.String(), nil
}

// ignoresIdempotencyKey reports whether the worker acts on every request of
// this call whatever its Idempotency-Key: the worker replays answers by key
// only on rollback (spec §5), and the POSTs below start and bill a build.
// On them a key does not make the call safe to send twice. route is the
// service call's route, or "" for Do, whose method and path (as the caller
// wrote it, query included) are matched against the routes instead.
func ignoresIdempotencyKey(route, method, target string) bool {
	if route == "" {
		route = matchRoute(method, target)
	}
	switch route {
	case RouteCreatePreview, RouteUpdateProject, RouteRebuild:
		return true
	}
	return false
}

// matchRoute returns the route of Routes that method and target (a path,
// possibly with a query) fall under, or "" for none. A {param} matches one
// non-empty segment.
func matchRoute(method, target string) string {
	path, _, _ := strings.Cut(target, "?")
	for _, route := range Routes() {
		m, pattern, _ := strings.Cut(route, " ")
		if m == method && pathMatches(pattern, path) {
			return route
		}
	}
	return ""
}

// pathMatches reports whether path has pattern's segments, each {param}
// standing for one non-empty segment.
func pathMatches(pattern, path string) bool {
	for {
		ps, prest, pmore := strings.Cut(pattern, "/")
		s, rest, more := strings.Cut(path, "/")
		if pmore != more {
			return false
		}
		if strings.HasPrefix(ps, "{") {
			if s == "" {
				return false
			}
		} else if ps != s {
			return false
		}
		if !more {
			return true
		}
		pattern, path = prest, rest
	}
}
