#!/usr/bin/env bash
# Checks the layering described in src/lib.rs: which modules may not use which. Exits 1 and
# names the file and the offending path on the first broken rule set.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

status=0

# model and fsm stay pure: deterministic, testable without a runtime.
if grep -rnE '\b(tokio|tonic|redis|raft)::' src/model src/fsm; then
  echo "src/model and src/fsm must not use tokio, tonic, redis or raft" >&2
  status=1
fi

# forbid PATH MODULE...: no Rust file under PATH may name crate::MODULE, whether as a path
# (crate::monitor::X, super::super::monitor), or inside a use group spanning lines
# (use crate::{fsm, monitor::X}). Comments are not exempt: a doc link is a dependency too.
forbid() {
  local path=$1
  shift
  if [ ! -e "$path" ]; then
    echo "$path does not exist: update the layering rules in $0" >&2
    status=1
    return
  fi
  local files
  files=$(find "$path" -name '*.rs' | sort)
  for m in "$@"; do
    # shellcheck disable=SC2086
    if ! M="$m" perl -0777 -ne '
        my $m = $ENV{M};
        (my $flat = $_) =~ s/\s+/ /g;
        while ($flat =~ /(\b(?:crate|super)::(?:super::)*(?:\{(?:[^;]*?[{,])? ?)?\Q$m\E\b[^;]{0,40})/g) {
          print STDERR "$ARGV: uses `$m`: $1\n";
          $bad = 1;
        }
        END { exit($bad ? 1 : 0) }
      ' $files; then
      echo "$path must not use crate::$m (see the layering in src/lib.rs)" >&2
      status=1
    fi
  done
}

# The Redis client layer sits below monitor and failover.
forbid src/instance monitor failover api app
# The local view and the wall clock may be read by every layer, so they use none of them.
forbid src/view.rs monitor failover api app instance net
forbid src/clock.rs monitor failover api app instance net consensus fsm
forbid src/stream.rs monitor failover api app instance net consensus fsm
# Failover and the API read the view, never the monitor itself.
forbid src/failover monitor
forbid src/api monitor

exit $status
