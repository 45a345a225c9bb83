package sheenhttp

import (
	"net/http"
	"strconv"

	"github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// JSON answers the SDK's own handlers (the proxy, the Verifier's
// middleware) give when they refuse a request themselves.

// Codes of refusals that both the proxy and the Verifier's middleware give.
const (
	codeBadRequest sheen.ErrorCode = "BAD_REQUEST"
	codeInternal   sheen.ErrorCode = "INTERNAL_ERROR"
)

// errorBody is the worker's usual error shape.
type errorBody struct {
	Error string          `json:"error"`
	Code  sheen.ErrorCode `json:"code"`
}

// tooLargeBody is the shape of the worker's web framework's 413.
type tooLargeBody struct {
	StatusCode int             `json:"statusCode"`
	Code       sheen.ErrorCode `json:"code"`
	Error      string          `json:"error"`
	Message    string          `json:"message"`
}

// writeError answers {"error": message, "code": code} with status; a 413
// gets the worker's web framework shape.
func writeError(w http.ResponseWriter, status int, code sheen.ErrorCode, message string) {
	if status == http.StatusRequestEntityTooLarge {
		writeJSON(w, status, tooLargeBody{StatusCode: status, Code: code, Error: "Payload Too Large", Message: message})
		return
	}
	writeJSON(w, status, errorBody{Error: message, Code: code})
}

// writeJSON answers status with v as compact JSON, marked neither to be
// cached nor sniffed.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := jsonx.Marshal(v) // the SDK's own small structs: they always encode
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
