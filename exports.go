package sheen

// ExportsService hands out signed download links for projects and versions
// and downloads their archives. Get it from WorkerClient.Exports.
type ExportsService service
