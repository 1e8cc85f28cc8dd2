-- Identity (issue 6): a session may be switched to the Personal workspace (no organisation).
-- Without the flag, a session whose current organisation is NULL falls back to the user's first
-- membership, which is what a fresh sign-in wants and what Personal must not get.
ALTER TABLE user_sessions ADD COLUMN personal_workspace boolean NOT NULL DEFAULT false;
CREATE INDEX user_sessions_active_idx ON user_sessions (user_id) WHERE revoked_at IS NULL;
