-- The stock example's table (plugins/stock), for PostgreSQL and MariaDB alike.
--   psql "postgresql://shop@127.0.0.1:5432/shop" -f plugins/stock/schema.sql
-- deploy/compose.yaml loads it into its databases on first start.
CREATE TABLE IF NOT EXISTS stock (
    sku        VARCHAR(64)    PRIMARY KEY,
    name       VARCHAR(200)   NOT NULL,
    qty        INTEGER        NOT NULL CHECK (qty >= 0),
    price      DECIMAL(10, 2) NOT NULL,
    updated_at TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO stock (sku, name, qty, price) VALUES
    ('A-1', 'Widget', 12, 2.50),
    ('B-2', 'Gadget', 0, 19.99),
    ('C-3', 'Gizmo', 3, 7.25);
