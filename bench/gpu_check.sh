#!/usr/bin/env bash
# GPU check of the real-model path: the `math500` profile (Qwen2.5-Math policy sampled with vLLM, an open PRM) on 20
# MATH-500 questions at budgets up to 16, on one GPU, then vLLM vs transformers sampling speed on the policy.
# Prints accuracy per method and budget, the tokens sampled per second, and the vLLM / transformers ratio.
#
#   pip install -e .[vllm]                   # once, on the GPU machine
#   bash bench/gpu_check.sh [OUT_DIR]        # models from the hub (or its local cache with HF_HUB_OFFLINE=1)
#   TASK_PATH=test.jsonl bash bench/gpu_check.sh   # MATH-500 from a local file instead of the hub
#
# It takes notebooks 01 and 02 end to end, so a failure names the notebook cell; the executed copies and the
# figures' JSON are under OUT_DIR (default /tmp/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-/tmp/gpu_check}")
py=${PYTHON:-python}
small=(-p num_test=20 -p pool_size=16 -p num_bins=2 -p num_subsets=50 -p ladder_samples=4 -p search_questions=20
       -p max_budget=16 -p lookahead_steps=[1] -p search_seeds=1 -p max_new_tokens=1024
       -p data_dir="$out/data" -p figures_dir="$out/figures")
[ -n "${TASK_PATH:-}" ] && small+=(-p task_path="$(realpath "$TASK_PATH")")
t0=$(date +%s)
"$py" -m ttc_utils.run --profile math500 01_difficulty_bins 02_prm_search "${small[@]}"
echo "notebooks 01 + 02 on 20 questions: $(( $(date +%s) - t0 )) s"
"$py" - "$out/figures" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
figs = Path(sys.argv[1])
curves = pd.DataFrame(json.loads((figs / "fig03a_search_methods.json").read_text())["curves"])
print("accuracy on 20 MATH-500 questions (rows: budget N):")
print(curves.pivot_table(index="budget", columns="label", values="accuracy").round(3).to_string())
pool = pd.DataFrame(json.loads((figs / "nb01_coverage_majority.json").read_text())["overall"])
print(pool.pivot_table(index="budget", columns="method", values="accuracy").round(3).to_string())
PY
"$py" bench/vllm_sampling.py --policy Qwen/Qwen2.5-Math-1.5B-Instruct --task math --device cuda --dtype bfloat16 \
  --questions 20 --n 16 --tokens 512 ${TASK_PATH:+--task-path "$(realpath "$TASK_PATH")"}
