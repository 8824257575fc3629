-- ASP.NET Core Data Protection's key ring (the keys that protect the console's session cookies and its forms' antiforgery
-- tokens), shared by every instance: a cookie or form from one instance is good on another, and survives a restart.
CREATE TABLE data_protection_keys (
    id bigserial PRIMARY KEY,
    friendly_name text NOT NULL,
    xml text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
