-- Bumped when the account signs out (or its role changes): every refresh token issued before
-- names an older version and is refused.
ALTER TABLE accounts ADD COLUMN session_version BIGINT NOT NULL DEFAULT 0;
