-- API tokens (package token): one row per change of a token, the highest
-- version being the current one; ReplacingMergeTree keeps only it once
-- parts merge: read with argMax(column, version) GROUP BY id. Only an
-- HMAC of each secret is stored (hash), never the secret; key_id names
-- the key that made the hash, not the key. The table stays small (one
-- row per token and per revocation), so a lookup by hash reads it whole.
CREATE TABLE IF NOT EXISTS api_tokens (
    id          String,
    name        String,
    tenant      {{lc}},
    all_tenants UInt8,
    role        {{lc}},
    hash        String,
    key_id      String,
    created_at  DateTime('UTC'),
    created_by  String,
    expires_at  DateTime('UTC'),
    revoked_at  DateTime('UTC'),
    revoked_by  String,
    version     UInt64
)
ENGINE = {{engine "ReplacingMergeTree(version)"}}
ORDER BY id;

-- When each token was last used: written by each process at most once
-- per tokens.usage_interval per token, in one batch, never per request.
-- The latest use is the row with the highest last_used_at.
CREATE TABLE IF NOT EXISTS api_token_usage (
    id           String,
    last_used_at DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(last_used_at)"}}
ORDER BY id;
