package pgevents

import (
	"cmp"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

// outcome is what a build's events say about how it ended, by the rules
// Builds.Wait applies (the first failure or deploy completion in id order
// stands; after a deploy, the metadata phase is followed until it ends).
// It mirrors the SDK's follower, which does not export its bookkeeping.
type outcome struct {
	buildID string

	count        int
	first        *sheen.BuildEvent
	success      *sheen.BuildEvent
	failure      *sheen.BuildEvent
	metadataSeen bool
	metadataDone bool
	metadataErr  *sheen.BuildEventError
	previewURL   string
	versionID    string
	versionName  string
	lastID       int64
}

// outcomeOf reads events (ascending ids) as Wait would, stopping where it
// would: at a failure, or at the end of the metadata phase after a deploy.
func outcomeOf(buildID string, events []sheen.BuildEvent) *outcome {
	o := &outcome{buildID: buildID}
	for _, ev := range events {
		o.observe(ev)
		if o.failure != nil || (o.success != nil && o.metadataDone) {
			break
		}
	}
	return o
}

func (o *outcome) observe(ev sheen.BuildEvent) {
	o.count++
	o.lastID = ev.ID
	if o.first == nil {
		first := ev
		o.first = &first
	}
	if ev.PreviewURL != "" {
		o.previewURL = ev.PreviewURL
	}
	if ev.VersionID != "" {
		o.versionID = ev.VersionID
	}
	if ev.VersionName != "" {
		o.versionName = ev.VersionName
	}
	if ev.Phase == sheen.PhaseMetadata {
		o.metadataSeen = true
		if ev.Kind == sheen.KindCompleted || ev.Kind == sheen.KindFailed || ev.Finished || (ev.HasProgress && ev.Progress >= 1) {
			o.metadataDone = true
		}
	}
	if ev.MetadataFailed() && o.metadataErr == nil {
		o.metadataErr = ev.Error
		if o.metadataErr == nil {
			o.metadataErr = &sheen.BuildEventError{Code: ev.Code, Message: cmp.Or(ev.Description, ev.Title, "metadata generation failed")}
		}
	}
	if o.success != nil || o.failure != nil {
		return
	}
	switch {
	case ev.DeploySucceeded():
		o.success = &ev
	case ev.BuildFailed():
		o.failure = &ev
	}
}

// metadataDeadline is when a reader would stop waiting for the metadata
// phase after the deploy completed at deployed.
func (o *outcome) metadataDeadline(deployed time.Time, wait, startWait time.Duration) time.Time {
	if !o.metadataSeen {
		wait = min(wait, startWait)
	}
	return deployed.Add(wait)
}

// result is the BuildResult Wait would return for a success.
func (o *outcome) result() *sheen.BuildResult {
	s := o.success
	r := &sheen.BuildResult{
		ID:            cmp.Or(s.BuildID, o.buildID),
		PreviewURL:    cmp.Or(s.PreviewURL, o.previewURL),
		VersionID:     o.versionID,
		VersionName:   o.versionName,
		Final:         *s,
		LastEventID:   o.lastID,
		Events:        o.count,
		MetadataDone:  o.metadataDone,
		MetadataError: o.metadataErr,
		Duration:      s.Duration,
	}
	if r.Duration == 0 && o.first != nil && !o.first.CreatedAt.IsZero() && s.CreatedAt.After(o.first.CreatedAt) {
		r.Duration = s.CreatedAt.Sub(o.first.CreatedAt)
	}
	return r
}

// failed is the *BuildFailedError Wait would return for a failure.
func (o *outcome) failed() *sheen.BuildFailedError {
	ev := *o.failure
	e := &sheen.BuildFailedError{ID: cmp.Or(ev.BuildID, o.buildID), Phase: ev.Phase, Event: ev, Code: ev.Code}
	if ev.Error != nil {
		e.Code = cmp.Or(ev.Error.Code, ev.Code)
		e.Message = ev.Error.Message
		e.Params = ev.Error.Params
	}
	e.Message = cmp.Or(e.Message, ev.Description, ev.Title, "the build failed")
	return e
}
