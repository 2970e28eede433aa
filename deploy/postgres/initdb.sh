#!/bin/sh
# First start of the postgres container only (/docker-entrypoint-initdb.d): one database and one
# owner role each for Orthanc's index and for PreRead's job store. The passwords are read from
# the compose secrets by psql itself (\set with a backtick command), so they never appear on a
# command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\set orthanc_pw `cat /run/secrets/orthanc_db_password`
\set preread_pw `cat /run/secrets/preread_db_password`
CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_pw';
CREATE DATABASE orthanc OWNER orthanc;
CREATE ROLE preread LOGIN PASSWORD :'preread_pw';
CREATE DATABASE preread OWNER preread;
SQL
