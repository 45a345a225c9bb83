package sheen

// BuildsService starts builds, follows their events and manages versions.
// Get it from WorkerClient.Builds.
type BuildsService service

// buildsConfig holds the Builds service's options.
type buildsConfig struct{}

// buildsState is the Builds service's share of the client's core.
type buildsState struct{}

func (s *buildsState) init(c *core, cfg buildsConfig) {}
