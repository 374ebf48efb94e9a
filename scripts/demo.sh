#!/usr/bin/env bash
# `make demo`: the main end-to-end job on the embedded store, offline: records, lineage and a
# tiny model that visibly learns (two-digit addition: SFT from scratch, then GRPO and DPO;
# ~3.5 minutes on 2 cores, most of it the four trainers; docs/training.md has the breakdown).
set -euo pipefail
export RLCTL_STORE="${RLCTL_STORE:-$PWD/.rlctl}"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }
# by run id, not `latest`: in a pipe, `latest` may be the pull that fed the trainer
newest_run() { rlctl sql --csv "SELECT run_id FROM runs WHERE command = '$1'
                                ORDER BY started_at DESC LIMIT 1" | tail -n 1; }
model_of() { rlctl sql --csv "SELECT path FROM artifacts WHERE run_id = '$1' AND kind = 'model'" | tail -n 1; }

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

say "rlctl model tiny .demo/arith --hidden-size 256 --heads 8 --no-chat-template  (1.6M parameters, random weights, a base model: plain-text prompts)"
[ -d .demo/arith ] || rlctl model tiny .demo/arith --hidden-size 256 --heads 8 --no-chat-template

say "rlctl data pull synth:arith | rlctl train sft -c configs/sft/arith-tiny.yaml --model .demo/arith  (two-digit addition in columns, plain text, from scratch, ~30 s)"
# the recipes (configs/*/arith-tiny.yaml) say why each setting; bench/learning.py and
# tests/test_learning.py read the same files
rlctl data pull synth:arith --shuffle --seed 0 \
  | rlctl train sft -c configs/sft/arith-tiny.yaml --model .demo/arith 2> .demo/sft.log
SFT_RUN=$(newest_run 'train sft'); SFT=$(model_of "$SFT_RUN")
rlctl runs plot "$SFT_RUN" --metric loss -o .demo/sft-loss.png > /dev/null 2>&1
rlctl sql "SELECT step, round(value, 3) AS loss FROM metrics
           WHERE name = 'loss' AND step % 25 = 1 AND run_id = '$SFT_RUN' ORDER BY step"

# the GSM8K rows lm-eval scores below, pulled before the trainers start so that the newest
# `data pull` is this one (the trainers' branches pull too)
rlctl data pull gsm8k --sample --limit 16 > /dev/null
GSM8K_PULL=$(newest_run 'data pull')

# GRPO and the preference loop both start from the SFT checkpoint: they run side by side, one
# OpenMP thread each (torch's small matmuls gain ~1.5x from a second thread, so two one-thread
# jobs finish sooner than two two-thread jobs in turn); their logs go to .demo/*.log
say "rlctl train grpo -c configs/grpo/arith-tiny.yaml --model \$SFT  (RL from the SFT checkpoint, math reward: 16 prompts x 8 samples a step; in the background)"
grpo_branch() {
  export OMP_NUM_THREADS=1
  rlctl data pull synth:arith --shuffle --seed 1 --limit 2000 \
    | rlctl train grpo -c configs/grpo/arith-tiny.yaml --model "$SFT" 2> .demo/grpo.log
}
grpo_branch &
GRPO_PID=$!

say "rlctl rollout --no-chat-template -n 4 | rlctl judge --judge math --pairs | rlctl train dpo  (the preference loop, with TRL's SFT term; beside GRPO)"
say "rlctl train beta-dpo -i latest:pairs --model \$SFT  (the same pairs: adaptive beta, filtered pairs, the same SFT term)"
PREF=(-c configs/dpo/arith-tiny.yaml --eval-input .demo/heldout-pairs.jsonl)
preference_branch() {
  export OMP_NUM_THREADS=1
  # held-out pairs, made the same way from sums never trained on: DPO evaluates them as it goes
  rlctl data pull synth:arith --split test --limit 100 \
    | rlctl rollout --model "$SFT" --no-chat-template -n 4 --temperature 0.7 --max-tokens 32 --batch-size 100 \
    | rlctl judge --judge math --pairs -o .demo/heldout-pairs.jsonl > /dev/null
  rlctl data pull synth:arith --shuffle --seed 2 --limit 2000 \
    | rlctl rollout --model "$SFT" --no-chat-template -n 4 --temperature 0.7 --max-tokens 32 --batch-size 100 \
    | rlctl judge --judge math --pairs \
    | rlctl train dpo --model "$SFT" "${PREF[@]}"
  rlctl train beta-dpo -i latest:pairs --model "$SFT" "${PREF[@]}"
} 2>> .demo/dpo.log
preference_branch &
PREF_PID=$!
# while the trainers work (their output goes to .demo/*.log): lm-eval on the SFT model, for
# the lineage it records, and what the store holds so far (the trainers show as running)
say "rlctl eval gsm8k --model \$SFT --shots 0 --data \$GSM8K_PULL  (lm-eval, offline, while the trainers run: for the lineage below; an adder scores 0 on GSM8K)"
rlctl eval gsm8k --model "$SFT" --shots 0 --data "$GSM8K_PULL" \
    --gen-kwargs max_gen_toks=48 2>> .demo/eval.log > /dev/null
EVAL_RUN=$(newest_run 'eval')

say "rlctl sql: every eval score walked back to its model, training run, data and pull (cookbook query 11)"
# the cookbook's own text, so the documented query is the one the demo runs
LINEAGE=$(awk '/^```sql$/{n++; on=(n==11); next} /^```$/{on=0} on' docs/cookbook.md)
rlctl sql "$LINEAGE"

say "rlctl sql: the training and eval runs so far, newest first (GRPO and DPO are still running)"
rlctl sql "SELECT run_id, command, status, round(duration_s, 2) AS seconds
           FROM runs WHERE command LIKE 'train %' OR command = 'eval' ORDER BY started_at DESC"

say "rlctl sql: the eval's artifacts and lineage"
rlctl sql "SELECT a.name, a.kind, a.format, a.records, a.complete
           FROM artifacts a WHERE a.run_id = '$EVAL_RUN' ORDER BY a.created_at"
rlctl sql "SELECT r.command, l.parent_run_id AS read_from, l.via
           FROM lineage l JOIN runs r USING (run_id) WHERE l.run_id = '$EVAL_RUN'"

say "rlctl sql: the records themselves, across every stored artifact"
rlctl sql "SELECT source, count(*) AS records, count(DISTINCT run_id) AS runs,
                  trim(any_value(coalesce(prompt, messages->>'\$[0].content')))[:60] AS example
           FROM (SELECT * FROM prompts UNION ALL BY NAME SELECT * FROM pairs) GROUP BY 1"

wait "$GRPO_PID"  # set -e: a failed branch stops the demo here
wait "$PREF_PID"

GRPO_RUN=$(newest_run 'train grpo'); GRPO=$(model_of "$GRPO_RUN")
rlctl runs plot "$GRPO_RUN" --metric reward -o .demo/reward.png > /dev/null 2>&1
echo "GRPO: mean reward of the sampled completions per 20 steps" >&2
rlctl sql "SELECT (step - 1) // 20 * 20 + 1 AS from_step, round(avg(reward), 3) AS mean_reward,
                  any_value(completion) AS sample
           FROM train_samples WHERE run_id = '$GRPO_RUN' GROUP BY 1 ORDER BY 1"
DPO=$(model_of "$(newest_run 'train dpo')")
BDPO=$(model_of "$(newest_run 'train beta-dpo')")
echo "DPO and beta-DPO: accuracy and margin on the held-out pairs, before and after" >&2
rlctl sql "SELECT r.command, m.step, round(max(m.value) FILTER (m.name = 'eval_rewards/accuracies'), 3) AS held_out_pair_accuracy,
                  round(max(m.value) FILTER (m.name = 'eval_rewards/margins'), 3) AS held_out_margin
           FROM metrics m JOIN runs r USING (run_id)
           WHERE r.run_id IN (SELECT run_id FROM runs WHERE command IN ('train dpo', 'train beta-dpo')
                              ORDER BY started_at DESC LIMIT 2) AND m.name LIKE 'eval_rewards/%'
           GROUP BY ALL ORDER BY 1, 2"

say "held-out accuracy: rollout | judge --judge math on the 500 sums never trained on"
# the five pipes run side by side, one OpenMP thread each: most of their time is start-up
# (imports, one core); measured here, 23 s against 37 s one after another, and 78 s side by side
# with torch's default threads (ten threads spinning on two cores)
evals=()
for model in .demo/arith "$SFT" "$GRPO" "$DPO" "$BDPO"; do
  { rlctl data pull synth:arith --split test \
      | OMP_NUM_THREADS=1 rlctl rollout --model "$model" --no-chat-template --temperature 0 --max-tokens 32 \
          --batch-size 100 \
      | rlctl judge --judge math > /dev/null; } 2>> .demo/eval.log &
  evals+=($!)
done
for pid in "${evals[@]}"; do wait "$pid"; done  # set -e: a failed pipe stops the demo here
rlctl sql "SELECT coalesce(r.command, 'base (random weights)') AS trained_by, count(*) AS held_out,
                  round(avg(j.reward), 3) AS accuracy
           FROM judged j LEFT JOIN artifacts a ON a.path = j.model AND a.kind = 'model'
           LEFT JOIN runs r ON r.run_id = a.run_id
           WHERE j.run_id IN (SELECT run_id FROM runs WHERE command = 'judge'
                              ORDER BY started_at DESC LIMIT 5)
           GROUP BY 1 ORDER BY accuracy"

echo >&2
echo "plots: .demo/reward.png (GRPO reward per step), .demo/sft-loss.png" >&2
echo "store: $RLCTL_STORE  (try: rlctl runs ls, rlctl runs show latest)" >&2
