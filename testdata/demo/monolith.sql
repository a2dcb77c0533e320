-- The demo monolith: users and orders, about to be scooped into services.
CREATE TABLE IF NOT EXISTS users (
  id            bigserial PRIMARY KEY,
  email_address text NOT NULL,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
  id         bigserial PRIMARY KEY,
  user_id    bigint NOT NULL,
  amount     numeric(12,2) NOT NULL,
  status     text NOT NULL DEFAULT 'new',
  placed_at  timestamptz NOT NULL DEFAULT now()
);
