-- The example shop database the stock plugin reads through the `orders` connector
-- (deploy/compose.yaml; README "Databases from plugins"). Its own role, never a superuser;
-- the password is the one the operator stores with `omnicore secrets set orders-db-password`.
CREATE ROLE shop LOGIN PASSWORD 'shop' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE shop OWNER shop;
\connect shop shop
\i /docker-entrypoint-initdb.d/stock/schema.sql
