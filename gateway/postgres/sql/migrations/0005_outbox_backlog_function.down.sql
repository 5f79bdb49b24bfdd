DROP FUNCTION outbox_backlog();
