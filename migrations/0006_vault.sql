-- The token vault: what a provider returned with its tokens that is not secret (QuickBooks
-- realm_id, Mailchimp dc and api_endpoint, Square merchant_id), handed to the plugin as
-- account facts; and an index for `syncd keys rotate` and `syncd keys status`.
ALTER TABLE oauth_tokens ADD COLUMN account jsonb NOT NULL DEFAULT '{}';
CREATE INDEX oauth_tokens_key_version ON oauth_tokens (encryption_key_version);
CREATE INDEX venue_api_keys_key_version ON venue_api_keys (encryption_key_version);
