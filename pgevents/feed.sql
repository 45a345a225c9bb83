-- sheen-go pgevents: the tables of the completion feed (pgevents.Feed).
--
-- Run once per database, in a migration or with pgevents.InstallFeed; safe to
-- run again. It needs the right to create tables in the schema that holds
-- project_build_events. Remove with:
--   DROP TABLE sheen_build_completions; DROP TABLE sheen_feed_state;

-- One row per feed: how far it has read project_build_events. Only the
-- replica holding the row's lock (FOR UPDATE SKIP LOCKED) reads on.
CREATE TABLE IF NOT EXISTS sheen_feed_state (
  feed        TEXT PRIMARY KEY,
  scanned_to  BIGINT NOT NULL,  -- every event id up to this is settled and read
  gap_up_to   BIGINT,           -- a gap above scanned_to being waited for: ids up to this were handed out
  gap_seen_at TIMESTAMPTZ,      -- when the gap was seen
  gap_xmax    BIGINT,           -- pg_snapshot_xmax once the gap had settled
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per feed and finished build: its outcome and its handling.
--   pending: waiting to be handled (again) from next_attempt_at on;
--   running: claimed by claimed_by until claimed_until (a lease the claimant
--            renews while its handler runs; an expired lease is taken over);
--   done:    the handler returned nil;
--   dead:    the handler failed max-attempts times: listed by
--            Feed.DeadLetters, back to pending with Feed.Replay.
CREATE TABLE IF NOT EXISTS sheen_build_completions (
  feed            TEXT NOT NULL,
  build_id        VARCHAR(64) NOT NULL,
  user_id         UUID,
  outcome         TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
  event_id        BIGINT NOT NULL,  -- the event that decided the outcome
  state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'dead')),
  attempts        INTEGER NOT NULL DEFAULT 0,  -- claims so far, crashed ones included
  last_attempt_at TIMESTAMPTZ,
  next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  claim_token     UUID,
  claimed_by      TEXT,
  claimed_until   TIMESTAMPTZ,
  last_error      TEXT,
  discovered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  done_at         TIMESTAMPTZ,
  PRIMARY KEY (feed, build_id)
);

CREATE INDEX IF NOT EXISTS sheen_build_completions_due
  ON sheen_build_completions (feed, next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS sheen_build_completions_leases
  ON sheen_build_completions (feed, claimed_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS sheen_build_completions_dead
  ON sheen_build_completions (feed) WHERE state = 'dead';
