#!/bin/bash
# Plays one scenario as `learnops-dump <subcommand> [artifact] ...` would end: writes a termination
# message and exits with a code. The scenario is /scenarios/<subcommand>/<key>, where the key is
# the pod's PGUSER (the user of the DatabaseBackup, the restore target or the drill's scratch
# server, so a test picks it through the resource), else "default".
#
# A scenario file's first line holds settings: exit=<code> [pad=<characters>];
# the rest is the message, with @PREFIX@ (BACKUP_PREFIX), @ARTIFACT@ (the artifact argument),
# @NOW@ (an RFC 3339 UTC time), @STAMP@ (a unique artifact stamp) and @PAD@ (pad x's) filled in.
set -euo pipefail
subcommand=${1:-run}
artifact=${2:-}
file=/scenarios/$subcommand/${PGUSER:-default}
[[ -f $file ]] || file=/scenarios/$subcommand/default
exit_code=0 pad=0
read -r -a settings <"$file"
for setting in "${settings[@]}"; do
  case $setting in
    exit=*) exit_code=${setting#exit=} ;;
    pad=*) pad=${setting#pad=} ;;
  esac
done
message=$(tail -n +2 "$file")
filler=$(printf "%${pad}s" "")
message=${message//@PREFIX@/${BACKUP_PREFIX:-}}
message=${message//@ARTIFACT@/$artifact}
message=${message//@NOW@/$(date -u +%Y-%m-%dT%H:%M:%SZ)}
message=${message//@STAMP@/$(date -u +%Y%m%dT%H%M%SZ-%N)}
message=${message//@PAD@/${filler// /x}}
printf '%s' "$message" >"${BACKUP_TERMINATION_LOG:-/dev/termination-log}"
echo "scenario ${file#/scenarios/}: exit $exit_code"
exit "$exit_code"
