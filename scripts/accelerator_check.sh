#!/usr/bin/env bash
# One prepared check of kdjax on a machine with a GPU or TPU (about 8 minutes):
#   1. kdjax.bench of every row of the study in its float32 and of the baseline
#      in bfloat16 too, pipelined throughput, MFU and host-boundness, and
#      of the baseline with one step per call against the default 13;
#   2. one real-shape epoch (50,000 random CIFAR-100-shaped images) of the
#      baseline and of offline + self (a random RepVGG-A0 teacher) through main.py,
#      counting how often the mapped calls compile;
#   2b. the host input stream against torchvision's ImageNet DataLoader on
#      4,096 real-photo JPEGs with every core, and how long a ResNet18 step at
#      224 px, batch 256, fed by it waits for it;
# all into one JSON file: scripts/accelerator_check.sh [OUTPUT_DIR] (default
# accelerator_check/). SMOKE=1 shrinks everything to run on a CPU in minutes.
#   3. With FASHION_MNIST=FOLDER (the four IDX .gz files of Fashion-MNIST; the
#      data never goes into the repo): the study's table on Fashion-MNIST at
#      an accelerator's size (scripts/reproduce.sh --study=fashion_mnist_full:
#      a ResNet50 teacher, then every row with a full-width ResNet18, 20
#      epochs, one seed; FASHION_MNIST_ROWS=a,b,... picks the rows, by
#      default the study's five), its small files and report into
#      OUTPUT_DIR/fashion_mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-accelerator_check}")
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bench=(--steps=5 --warmup_steps=2 --torch=false)
overrides=(--config.dataset=synthetic --config.num_epochs=1 --config.log_every_steps=100)
if [[ "${SMOKE:-0}" == 1 ]]; then
  bench=(--steps=1 --warmup_steps=0 --torch=false --width=4 --batch_size=8
         --methods=baseline,offline_self_kd_repvgg_a0 --host_boundness=false)
  overrides+=(--config.width=4 '--config.stage_sizes=(1,1,1,1)' --config.batch_size=1000
              --config.steps_per_call=1)
fi

echo "== kdjax.bench" >&2
python -m kdjax.bench "${bench[@]}" --output="$out/bench.json" | tee "$out/bench.txt"
echo "== kdjax.bench, one step per call (checks the default of 13)" >&2
python -m kdjax.bench "${bench[@]}" --methods=baseline --steps_per_call=1 \
    --host_boundness=false --output="$out/bench_one_step_per_call.json" \
    | tee "$out/bench_one_step_per_call.txt"

echo "== the input stream against torchvision's, on every core, and a step fed by it" >&2
input=(--input --input_workers="$(nproc)" --input_jpegs=4096)
[[ "${SMOKE:-0}" == 1 ]] && input=(--input --input_workers=1 --input_jpegs=128 --width=4
                                   --input_image_size=32 --input_batch_size=8)
python -m kdjax.bench "${input[@]}" --output="$out/input_bench.json" | tee "$out/input_bench.txt"

echo "== a random RepVGG-A0 teacher" >&2
python - "$work/teacher" "${SMOKE:-0}" <<'EOF'
import sys
import jax, jax.numpy as jnp
from kdjax import checkpoint, data, models
from kdjax import workdir as workdir_lib
out, smoke = sys.argv[1], sys.argv[2] == '1'
kwargs = {'width': 4} if smoke else {}
model = models.get_model('repvgg_a0', 100, **kwargs)
variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)), train=False)
workdir_lib.write_model_file(out, 'repvgg_a0', 100, kwargs, data.CIFAR100_MEAN,
                             data.CIFAR100_STD, (32, 32, 3))
checkpoint.save_variables(out, variables)
EOF

for row in baseline offline_self; do
  config=configs/$row.py
  [[ $row == offline_self ]] && config="configs/offline_self_kd.py:repvgg_a0"
  echo "== one epoch of $config on synthetic data" >&2
  extra=()
  [[ $row == offline_self ]] && extra=(--config.teacher="$work/teacher")
  JAX_LOG_COMPILES=1 python main.py --config="$config" --workdir="$work/$row" \
      "${overrides[@]}" "${extra[@]}" 2> "$out/$row.log"
  cp "$work/$row/metrics.jsonl" "$out/$row.metrics.jsonl"
done

python - "$out" <<'EOF'
import json, os, re, sys
out = sys.argv[1]
report = {'bench': json.load(open(os.path.join(out, 'bench.json'))),
          'bench_one_step_per_call': json.load(open(
              os.path.join(out, 'bench_one_step_per_call.json'))),
          'input_bench': json.load(open(os.path.join(out, 'input_bench.json'))), 'epochs': {}}
for row in ('baseline', 'offline_self'):
  log = open(os.path.join(out, f'{row}.log')).read()
  record = [json.loads(l) for l in open(os.path.join(out, f'{row}.metrics.jsonl'))][-1]
  report['epochs'][row] = {
      'images_per_sec': record['images_per_sec'], 'epoch_time_s': record['epoch_time_s'],
      # jax_log_compiles logs each compilation; JAX names every pmap-ed call
      # jit(_fun): train, evaluation and the teacher's evaluation, each compiled
      # once if nothing recompiles: 2 for the baseline, 3 with a teacher.
      'mapped_call_compilations': len(re.findall(r'Finished XLA compilation of jit\(_fun\)',
                                                 log)),
      'expected_compilations': 3 if row == 'offline_self' else 2,
  }
with open(os.path.join(out, 'accelerator_check.json'), 'w') as f:
  json.dump(report, f, indent=2)
print(json.dumps(report['epochs'], indent=2))
print('host-boundness:', report['bench'].get('host_boundness', {}).get('ratio'))
print('Wrote', os.path.join(out, 'accelerator_check.json'))
EOF

if [[ -n "${FASHION_MNIST:-}" ]]; then
  echo "== the study's rows on Fashion-MNIST from $FASHION_MNIST" >&2
  table=()
  if [[ "${SMOKE:-0}" == 1 ]]; then
    table=(--config.num_epochs=1 --config.width=4 '--config.stage_sizes=(1,1,1,1)')
  fi
  # The study's rows (--rows= adds the compared methods: ps_kd,cs_kd,...).
  python -m kdjax.reproduce --study=fashion_mnist_full --seeds=1 \
      --rows="${FASHION_MNIST_ROWS:-baseline,offline_kd,self_kd,offline_self_kd,offline_kd_no_mixup}" \
      --runs="$work/fashion_mnist" --results="$out/fashion_mnist" \
      -- --config.manual_dir="$(realpath "$FASHION_MNIST")" "${table[@]}" \
      2> "$out/fashion_mnist.log"
fi
