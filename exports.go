package sheen

// ExportsService hands out signed download links for projects and versions
// and downloads their archives. Get it from WorkerClient.Exports.
type ExportsService service

// exportsConfig holds the Exports service's options.
type exportsConfig struct{}

// exportsState is the Exports service's share of the client's core.
type exportsState struct{}

func (s *exportsState) init(c *core, cfg exportsConfig) {}
