#!/bin/sh
# Entry point of the PreRead image (run under tini).
#
# Secrets from files: for each setting named in SECRET_SETTINGS, NAME_FILE=/path sets NAME to the
# file's content (trailing newlines removed), the convention of the postgres image. Only these
# names are expanded: PREREAD_DEID_KEY_FILE and PREREAD_REID_VAULT_KEY_FILE are settings of their
# own (paths that PreRead reads itself) and are left alone.
set -eu

SECRET_SETTINGS="PREREAD_DATABASE_URL PREREAD_ORTHANC_PASSWORD PREREAD_BROKER_URL"

for name in $SECRET_SETTINGS; do
  eval "file=\${${name}_FILE:-}"
  [ -n "$file" ] || continue
  eval "direct=\${${name}:-}"
  if [ -n "$direct" ]; then
    echo "preread-entrypoint: set $name or ${name}_FILE, not both" >&2
    exit 64
  fi
  if [ ! -r "$file" ]; then
    echo "preread-entrypoint: ${name}_FILE=$file is not a readable file" >&2
    exit 66
  fi
  value=$(cat "$file")
  export "$name=$value"
  unset "${name}_FILE"
done

exec "$@"
