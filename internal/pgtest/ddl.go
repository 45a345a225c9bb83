package pgtest

// BuildEventsDDL creates the worker's project_build_events table and its
// indexes exactly as the spec gives them (worker-api.md section 6), for
// tests, examples and benchmarks that play the worker.
const BuildEventsDDL = `
CREATE TABLE IF NOT EXISTS project_build_events (
  id                 SERIAL PRIMARY KEY,
  build_id           VARCHAR(64) NOT NULL,
  event_type         VARCHAR(50) NOT NULL,
  event_data         JSONB NOT NULL DEFAULT '{}',
  user_id            UUID,
  created_at         TIMESTAMP WITHOUT TIME ZONE DEFAULT NOW(),
  user_visible       BOOLEAN DEFAULT TRUE,
  event_phase        VARCHAR(20),
  event_title        VARCHAR(200),
  event_description  TEXT,
  overall_progress   NUMERIC(3,2) CHECK (overall_progress BETWEEN 0 AND 1),
  finished           BOOLEAN DEFAULT FALSE,
  preview_url        TEXT,
  error_code         TEXT,
  error_params       JSONB,
  user_error_message TEXT,
  event_code         VARCHAR(100),
  event_params       JSONB,
  duration_seconds   NUMERIC(8,2),
  version_id         TEXT,
  version_name       TEXT
);
CREATE INDEX IF NOT EXISTS idx_build_events_lookup ON project_build_events (build_id, created_at);
CREATE INDEX IF NOT EXISTS idx_build_events_polling ON project_build_events (build_id, user_id, user_visible, id) WHERE user_visible;
`
