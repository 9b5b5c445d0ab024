#!/bin/sh
# Generates the secrets a deployment form reads, each a random 64-hex-character value in its
# own file, in a directory only its owner can enter (0700). An existing file is kept, so running
# it again never rotates a secret behind a running cluster's back.
#   deploy/gen-secrets.sh compose   # deploy/compose/secrets/, mounted as compose secrets
#   deploy/gen-secrets.sh k8s       # deploy/k8s/secrets/, turned into the Secret by kustomize
#   deploy/gen-secrets.sh DIR NAME...   # any other set
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mode=600
case "${1:-}" in
  # Compose bind-mounts file secrets with their host permissions: the files must be readable by
  # the container's user, the directory (0700) keeps other host users out.
  compose) dir="$here/compose/secrets"; mode=644; set -- redis_password sentinel_password api_password cluster_secret ;;
  k8s) dir="$here/k8s/secrets"; set -- redis-password sentinel-password api-password cluster-secret ;;
  "") echo "usage: $0 compose|k8s|DIR NAME..." >&2; exit 64 ;;
  *) dir=$1; shift ;;
esac
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
for name in "$@"; do
  f="$dir/$name"
  if [ -s "$f" ]; then
    echo "kept      $f"
    continue
  fi
  # 32 random bytes as hex: printable, so it works as a password everywhere.
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$f.tmp"
  echo >> "$f.tmp"
  chmod "$mode" "$f.tmp"
  mv "$f.tmp" "$f"
  echo "generated $f"
done
