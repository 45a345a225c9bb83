package sheen

// BuildsService starts builds, follows their events and manages versions.
// Get it from WorkerClient.Builds.
type BuildsService service
