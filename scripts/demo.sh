#!/usr/bin/env bash
# `make demo`: the main end-to-end job on the embedded store, offline, in a few seconds.
set -euo pipefail
export RLCTL_STORE="${RLCTL_STORE:-$PWD/.rlctl}"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }

say "rlctl data pull gsm8k --sample --limit 50 | rlctl data validate --kind prompt"
rlctl data pull gsm8k --sample --limit 50 | rlctl data validate --kind prompt

say "rlctl data pull hh-rlhf --sample --format parquet  (pair records, stored as Parquet)"
rlctl data pull hh-rlhf --sample --format parquet > /dev/null

say "rlctl model tiny .demo/tiny  (random weights, bundled tokenizer: nothing to download)"
[ -d .demo/tiny ] || { mkdir -p .demo && rlctl model tiny .demo/tiny; }

say "rlctl data pull gsm8k --sample --limit 8 | rlctl rollout --model .demo/tiny -n 2 --logprobs | rlctl judge --judge math"
rlctl data pull gsm8k --sample --limit 8 \
  | rlctl rollout --model .demo/tiny -n 2 --max-tokens 48 --logprobs \
  | rlctl judge --judge math > /dev/null

say "rlctl compare-logprobs -i latest:rollout --model .demo/tiny --dtype bfloat16 --vs fp32_lm_head=true"
rlctl compare-logprobs -i latest:rollout --model .demo/tiny --dtype bfloat16 --vs fp32_lm_head=true > /dev/null

say "rlctl sql: pull -> rollout -> judge, linked by lineage"
rlctl sql "SELECT r.command, r.status, p.command AS read_from, a.records
           FROM runs r LEFT JOIN lineage l USING (run_id) LEFT JOIN runs p ON p.run_id = l.parent_run_id
           LEFT JOIN artifacts a ON a.run_id = r.run_id
           WHERE r.command IN ('data pull', 'rollout', 'judge') ORDER BY r.started_at DESC LIMIT 3"
rlctl sql "SELECT model, backend, count(*) AS samples, avg(reward) AS mean_reward,
                  avg(len(completion_token_ids::INT[])) AS mean_tokens
           FROM judged GROUP BY ALL"

say "rlctl train sft: teach the tiny model GSM8K's answer format (#### N) from the bundled solutions"
rlctl data pull gsm8k --sample --limit 64 \
  | rlctl train sft --model .demo/tiny --target meta.solution --max-steps 30 \
      --set trainer.learning_rate=3e-3 --set trainer.per_device_train_batch_size=8 2> .demo/sft.log
SFT=$(rlctl sql --csv "SELECT a.path FROM artifacts a JOIN runs r USING (run_id)
        WHERE r.command = 'train sft' AND a.kind = 'model' ORDER BY r.started_at DESC LIMIT 1" | tail -n 1)

say "rlctl train grpo --model \$SFT --reward math --reward format=0.1  (a few steps, on CPU)"
rlctl data pull gsm8k --sample --limit 32 \
  | rlctl train grpo --model "$SFT" --reward math --reward format=0.1 --max-steps 6 \
      --set 'format_regex=#### -?[0-9]' --set format_search=true \
      --set trainer.max_completion_length=48 --set trainer.num_generations=4 \
      --set trainer.per_device_train_batch_size=4 --set trainer.learning_rate=1e-4 2> .demo/grpo.log

say "rlctl runs plot latest --metric reward ...: the reward curve, read back from the store"
rlctl runs plot latest --metric reward --metric rewards/rlctl_format/mean -o .demo/reward.png
rlctl sql "SELECT step, round(avg(reward), 3) AS mean_reward, any_value(left(completion, 50)) AS sample
           FROM train_samples GROUP BY step ORDER BY step"

say "rlctl eval gsm8k --model \$GRPO --shots 0 --data latest:data-pull  (lm-evaluation-harness, offline)"
GRPO=$(rlctl sql --csv "SELECT a.path FROM artifacts a JOIN runs r USING (run_id)
        WHERE r.command = 'train grpo' AND a.kind = 'model' ORDER BY r.started_at DESC LIMIT 1" | tail -n 1)
rlctl data pull gsm8k --sample --limit 16 > /dev/null
for model in .demo/tiny "$SFT" "$GRPO"; do
  rlctl eval gsm8k --model "$model" --shots 0 --data latest:data-pull \
      --gen-kwargs max_gen_toks=48 2>> .demo/eval.log > /dev/null
done
rlctl eval compare --baseline configs/baselines/qwen3-1.7b-base.yaml

say "rlctl sql: every eval score walked back to its model, training run, data and pull (cookbook query 11)"
# the cookbook's own text, so the documented query is the one the demo runs
LINEAGE=$(awk '/^```sql$/{n++; on=(n==11); next} /^```$/{on=0} on' docs/cookbook.md)
rlctl sql "$LINEAGE"

say "rlctl sql: the runs just made, newest first"
rlctl sql "SELECT run_id, command, status, round(duration_s, 2) AS seconds
           FROM runs ORDER BY started_at DESC LIMIT 8"

say "rlctl sql: their artifacts and lineage"
rlctl sql "SELECT a.run_id, a.name, a.kind, a.format, a.records, a.complete
           FROM artifacts a ORDER BY a.created_at DESC LIMIT 3"
rlctl sql "SELECT l.run_id AS run, r.command, l.parent_run_id AS read_from, l.via
           FROM lineage l JOIN runs r USING (run_id) ORDER BY r.started_at DESC LIMIT 3"

say "rlctl sql: the records themselves, across every stored artifact"
rlctl sql "SELECT source, count(*) AS records, count(DISTINCT run_id) AS runs,
                  any_value(messages->>'\$[0].content')[:60] AS example
           FROM (SELECT * FROM prompts UNION ALL BY NAME SELECT * FROM pairs) GROUP BY 1"

echo >&2
echo "store: $RLCTL_STORE  (try: rlctl runs ls, rlctl runs show latest)" >&2
