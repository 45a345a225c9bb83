-- sheen-go pgevents: wake readers when a build event is written.
--
-- After every insert of a user-visible row into project_build_events, this
-- trigger sends NOTIFY sheen_build_events with the row's build_id as the
-- payload. Notifications are delivered when the inserting transaction
-- commits, so a reader that is woken always finds the row. Readers that do
-- not LISTEN are not affected, and a reader keeps polling when the trigger
-- is absent. Safe to run again: it replaces what it installed before.

CREATE OR REPLACE FUNCTION sheen_notify_build_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('sheen_build_events', NEW.build_id);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS sheen_build_events_notify ON project_build_events;

CREATE TRIGGER sheen_build_events_notify
  AFTER INSERT ON project_build_events
  FOR EACH ROW
  WHEN (NEW.user_visible)
  EXECUTE FUNCTION sheen_notify_build_event();
