#!/bin/sh
# Creates deploy/secrets/ for compose.yaml: random passwords, written once (an existing file is
# kept). The folder is 0700; the files are 0444 because each container reads them under its own
# user (postgres, redis, orthanc, preread). Never commit this folder (deploy/.gitignore).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets

random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

write() {  # write NAME CONTENT: secrets/NAME unless it exists
  if [ ! -e "secrets/$1" ]; then
    printf '%s\n' "$2" > "secrets/$1"
    chmod 0444 "secrets/$1"
    echo "created secrets/$1" >&2
  fi
}

pw_file() {  # the password kept in secrets/NAME, created first if missing
  write "$1" "$(random)"
  head -n 1 "secrets/$1"
}

pw_file postgres_password > /dev/null
orthanc_db=$(pw_file orthanc_db_password)
preread_db=$(pw_file preread_db_password)
preread_orthanc=$(pw_file preread_orthanc_password)
redis=$(random)
[ -e secrets/redis.conf ] && redis=$(sed -n 's/^requirepass //p' secrets/redis.conf)

write orthanc_users.json "{\"preread\": \"$preread_orthanc\"}"
write preread_database_url "postgresql+psycopg://preread:$preread_db@postgres:5432/preread"
write redis.conf "requirepass $redis"
write preread_broker_url "redis://:$redis@redis:6379/0"
: "$orthanc_db"  # used by postgres (initdb.sh) and Orthanc through their own secrets
