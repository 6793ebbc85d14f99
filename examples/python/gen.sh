#!/usr/bin/env bash
# gen.sh writes examples/python/modeld.binpb, the FileDescriptorSet of the modeld API
# (proto/modeld/v1 and the well-known types it imports), from which client.py builds its
# message classes at run time. Rerun it whenever a .proto file under proto/ changes.
#
# Usage (from anywhere in the repository):
#   examples/python/gen.sh          regenerate examples/python/modeld.binpb
#   examples/python/gen.sh --check  exit 1 if the committed file is not what buf builds now
#
# Needs Go and the Go module proxy (or a warm module cache): buf runs through `go run`, at the
# version scripts/protocheck uses.
set -euo pipefail

BUF_VERSION=v1.75.0 # keep in step with scripts/protocheck

cd "$(dirname "$0")/../.."
out=examples/python/modeld.binpb
buf() { go run "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}" "$@"; }

case "${1-}" in
'')
	# Source info (the .proto comments) is left out: the client needs only the types.
	buf build --exclude-source-info -o "$out"
	echo "wrote $out"
	;;
--check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	buf build --exclude-source-info -o "$tmp/modeld.binpb"
	if ! cmp -s "$tmp/modeld.binpb" "$out"; then
		echo "$out is out of date with proto/: run examples/python/gen.sh and commit the result" >&2
		exit 1
	fi
	echo "$out is up to date"
	;;
*)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
	;;
esac
