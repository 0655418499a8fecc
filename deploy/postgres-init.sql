-- The role omnicore connects as: it owns its database and nothing else (never a superuser).
-- Run once by the postgres image on an empty data volume (deploy/compose.yaml); on your own
-- server, run it as an administrator with a password of your choice.
CREATE ROLE omnicore LOGIN PASSWORD 'omnicore' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE omnicore OWNER omnicore;
