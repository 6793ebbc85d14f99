#!/usr/bin/env bash
# Fine-tune a model on your own texts and sample from it: the workflow of the Hugging Face
# Transformers "language modeling" notebook (load a pretrained causal LM, fine-tune it on a
# text corpus, generate with top-k/top-p sampling), done with modeld and modelcli.
#
# Runs from a fresh checkout with no network: it builds modeld and modelcli, starts modeld on a
# free loopback port with temporary --models-dir and --data-dir, loads the built-in model
# gpt2-go (a small byte-level GPT-2 trained on Go source), fine-tunes it on the Go
# distribution's sort package, generates three sequences from the fine-tuned model, and stops
# the server. Any failing step makes the script exit non-zero.
#
# Usage: examples/finetune/run.sh
#
# Environment (all optional):
#   STEPS        optimizer steps of the fine-tuning job (default 80, about 4 s on 2 cores)
#   PROMPT       prompt to continue (default "func (x")
#   KEEP_TMPDIR  if set, leave the temporary directory (binaries, models, job data, server log)
set -euo pipefail

cd "$(dirname "$0")/../.."
steps=${STEPS:-80}
prompt=${PROMPT:-"func (x"}
[[ "$steps" =~ ^[1-9][0-9]*$ ]] || { echo "STEPS=$steps: want a positive integer" >&2; exit 2; }

section() { printf '\n=== %s\n' "$*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/modeld-finetune.XXXXXX")
pid=
cleanup() {
	local rc=$?
	if [[ -n "$pid" ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if ((rc != 0)) && [[ -s "$tmp/modeld.log" ]]; then
		echo "--- last lines of the modeld log ($tmp/modeld.log):" >&2
		tail -n 20 "$tmp/modeld.log" >&2
	fi
	if [[ -n "${KEEP_TMPDIR-}" ]]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "build modeld and modelcli"
go build -o "$tmp/bin/" ./cmd/modeld ./cmd/modelcli
ls "$tmp/bin"

section "start modeld"
# Port 0: the kernel picks a free port, and modeld logs the address it got.
"$tmp/bin/modeld" --addr 127.0.0.1:0 --models-dir "$tmp/models" --data-dir "$tmp/data" \
	>"$tmp/modeld.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 300); do # up to 30 s: the built-in model loads before the server listens
	addr=$(sed -n 's/.*msg="modeld serving" addr=\([^ ]*\).*/\1/p' "$tmp/modeld.log")
	[[ -n "$addr" ]] && break
	kill -0 "$pid" 2>/dev/null || { echo "modeld exited before serving" >&2; exit 1; }
	sleep 0.1
done
[[ -n "$addr" ]] || { echo "modeld did not start serving within 30 s" >&2; exit 1; }
export MODELD_ADDR=$addr # modelcli's default address
cli() { "$tmp/bin/modelcli" "$@"; }
for i in $(seq 50); do # until a call gets through, up to 10 s
	cli --timeout 2s models list >/dev/null 2>&1 && break
	((i < 50)) || { echo "modeld at $addr does not answer" >&2; exit 1; }
	sleep 0.2
done
echo "modeld (pid $pid) serving on $addr"

section "load the built-in model"
cli models load gpt2-go
cli models list

section "training data: the Go distribution's sort package"
# One document per file, separated by <|endoftext|>, the plain-text dataset format.
goroot=$(go env GOROOT)
shopt -s nullglob
files=("$goroot"/src/sort/*.go)
((${#files[@]} > 0)) || { echo "no Go files in $goroot/src/sort" >&2; exit 1; }
for f in "${files[@]}"; do
	cat "$f"
	printf '<|endoftext|>'
done >"$tmp/sort.txt"
echo "${#files[@]} files from $goroot/src/sort, $(wc -c <"$tmp/sort.txt") bytes -> sort.txt"

section "fine-tune gpt2-go on sort.txt ($steps steps)"
# 10% of the documents are held out; the job reports their loss and perplexity at the end.
cli train --base gpt2-go --data "$tmp/sort.txt" --output-model gpt2-go-sort \
	--max-steps "$steps" --batch-size 4 --seq-len 128 --learning-rate 1e-3 \
	--eval-split 0.1 --log-every 10
cli models list

section "generate with gpt2-go-sort: top-k 50, top-p 0.95, 3 sequences"
printf 'prompt: "%s"\n' "$prompt"
cli generate --model gpt2-go-sort --top-k 50 --top-p 0.95 --n 3 --max-new-tokens 120 --seed 1 "$prompt"

section "done"
