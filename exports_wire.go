package sheen

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sheenapps/sheen-go/internal/jsonx"
)

// linkAnswer is the worker's 200 answer to a link request, checked as it
// is decoded: an answer that gives no usable link fails the decoding, and
// the core reports the call's *ResponseError (ErrInvalidResponse).
type linkAnswer struct {
	link DownloadLink
}

// Why a 200 link answer is unusable. None quotes the answer: its URL's
// query is a credential.
var (
	errLinkNotSuccess = errors.New(`"success" is false in a 200 answer`)
	errLinkNoURL      = errors.New("no downloadUrl")
	errLinkBadURL     = errors.New("downloadUrl is not an absolute http(s) URL")
)

type downloadLinkWire struct {
	Success     *bool              `json:"success"`
	DownloadURL string             `json:"downloadUrl"`
	ExpiresAt   isoTime            `json:"expiresAt"`
	Filename    string             `json:"filename"`
	Size        jsonx.Number       `json:"size"`
	Version     *exportVersionWire `json:"version"`
}

type exportVersionWire struct {
	ID        string  `json:"id"`
	Prompt    string  `json:"prompt"`
	CreatedAt isoTime `json:"createdAt"`
	ProjectID string  `json:"projectId"`
}

// UnmarshalJSON implements json.Unmarshaler: it reads the answer and
// refuses one without a usable link.
func (a *linkAnswer) UnmarshalJSON(b []byte) error {
	var w downloadLinkWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	switch {
	case w.Success != nil && !*w.Success:
		return errLinkNotSuccess
	case w.DownloadURL == "":
		return errLinkNoURL
	case !isAbsoluteHTTPURL(w.DownloadURL):
		return errLinkBadURL
	}
	a.link = DownloadLink{
		signed:    &w.DownloadURL,
		ExpiresAt: time.Time(w.ExpiresAt),
		Filename:  w.Filename,
		Size:      w.Size.Int(),
	}
	if v := w.Version; v != nil {
		a.link.Version = ExportVersion{ID: v.ID, Prompt: v.Prompt, CreatedAt: time.Time(v.CreatedAt), ProjectID: v.ProjectID}
	}
	return nil
}

// isoTime is a time the worker writes as an ISO 8601 string. Anything else
// (a number, an object, a string that does not parse) reads as the zero
// time rather than failing the answer: a link of unknown expiry is still
// handed out, just never cached. (jsonx.LooseTime would read Unix seconds
// too: an expiry in an unexpected form is not trusted here.)
type isoTime time.Time

// UnmarshalJSON implements json.Unmarshaler; it never fails.
func (t *isoTime) UnmarshalJSON(b []byte) error {
	var s string
	*t = isoTime{}
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s)); err == nil {
			*t = isoTime(v)
		}
	}
	return nil
}

// artifactMissingWire is the body of a 404 for an archive that is gone.
type artifactMissingWire struct {
	CanRebuild *bool  `json:"canRebuild"`
	RebuildURL string `json:"rebuildUrl"`
}

// artifactMissing turns a 404 whose body carries canRebuild or rebuildUrl
// into an *ArtifactMissingError for the request r; other errors pass
// through.
func (r linkRequest) artifactMissing(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		return err
	}
	var w artifactMissingWire
	if json.Unmarshal(ae.Body, &w) != nil || (w.CanRebuild == nil && w.RebuildURL == "") {
		return err
	}
	missing := &ArtifactMissingError{
		APIError: ae, CanRebuild: w.CanRebuild != nil && *w.CanRebuild, RebuildURL: w.RebuildURL,
		UserID: r.userID, from: r,
	}
	if r.kind == linkVersion {
		missing.VersionID = r.id
	} else if m := rebuildURLVersion.FindStringSubmatch(w.RebuildURL); m != nil {
		if v, err := url.PathUnescape(m[1]); err == nil {
			missing.VersionID = v
		}
	}
	return missing
}

// rebuildURLVersion finds the version id in a rebuildUrl such as
// "/v1/versions/ver_1/rebuild" (absolute URLs too).
var rebuildURLVersion = regexp.MustCompile(`/v1/versions/([^/?#]+)/rebuild(?:$|[?#])`)
