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
#   4. With IMAGENET=FOLDER (ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar;
#      TFDS prepares them into IMAGENET_DATA_DIR, default ~/tensorflow_datasets,
#      once: hours, reused by every later run): the KD row
#      (configs/imagenet.py:kd) on one device at batch 256 (lr 0.1) for one
#      epoch of the first IMAGENET_EXAMPLES (64,000) training images through
#      the real stream, then its top-1 on the whole validation split; the
#      loop's img/s and steps/s after compilation against kdjax.bench's step
#      alone on device-resident images of the same shape (host-boundness:
#      their ratio, 1 when device-bound).
#      The teacher is teachers/resnet34_imagenet if fetched, else a random
#      ResNet34. Into OUTPUT_DIR/imagenet.json.
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

# random_teacher OUT ARCH DATASET KWARGS_JSON: a teacher directory of random
# weights (it times as a real one), for DATASET's images and classes.
random_teacher() {
  python - "$@" <<'EOF'
import json, sys
import jax, jax.numpy as jnp
from kdjax import checkpoint, data, models
from kdjax import workdir as workdir_lib
out, arch, dataset, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
info = data.describe(dataset)
model = models.get_model(arch, info.num_classes, **kwargs)
variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)), train=False)
workdir_lib.write_model_file(out, arch, info.num_classes, kwargs, info.mean, info.std,
                             info.image_shape)
checkpoint.save_variables(out, variables)
EOF
}

echo "== a random RepVGG-A0 teacher" >&2
small='{}'
[[ "${SMOKE:-0}" == 1 ]] && small='{"width": 4}'
random_teacher "$work/teacher" repvgg_a0 cifar100 "$small"

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

if [[ -n "${IMAGENET:-}" ]]; then
  echo "== the ImageNet KD row on one device, through the stream, from $IMAGENET" >&2
  examples=${IMAGENET_EXAMPLES:-64000}
  [[ "${SMOKE:-0}" == 1 ]] && examples=${IMAGENET_EXAMPLES:-48}
  kd=(--config.batch_size=256 --config.learning_rate=0.1 --config.num_epochs=1
      --config.train_examples="$examples" --config.log_every_steps=50
      --config.manual_dir="$(realpath "$IMAGENET")"
      --config.data_dir="${IMAGENET_DATA_DIR:-$HOME/tensorflow_datasets}")
  bench_kd=(--methods=configs/imagenet.py:kd --batch_size=256)
  if [[ "${SMOKE:-0}" == 1 ]]; then
    kd+=(--config.width=4 --config.batch_size=8 --config.eval_batch_size=8
         --config.input_workers=1 --config.log_every_steps=1)
    bench_kd=(--methods=configs/imagenet.py:kd --batch_size=8 --width=4)
  fi
  teacher=teachers/resnet34_imagenet
  if [[ ! -f $teacher/model.json ]]; then
    teacher="$work/resnet34_imagenet"
    stem='{"stem": "imagenet"}'
    [[ "${SMOKE:-0}" == 1 ]] && stem='{"stem": "imagenet", "width": 4}'
    random_teacher "$teacher" resnet34 imagenet2012 "$stem"
  fi
  one_device=()  # the first GPU of a machine with several
  command -v nvidia-smi > /dev/null && one_device=(env CUDA_VISIBLE_DEVICES=0)
  "${one_device[@]}" python main.py --config=configs/imagenet.py:kd \
      --workdir="$work/imagenet_kd" "${kd[@]}" --config.teacher="$teacher" \
      2> "$out/imagenet_kd.log"
  cp "$work/imagenet_kd/metrics.jsonl" "$out/imagenet_kd.metrics.jsonl"
  # The same step alone, on device-resident images of its shape.
  "${one_device[@]}" python -m kdjax.bench "${bench[@]}" "${bench_kd[@]}" --host_boundness=false \
      --output="$out/imagenet_bench.json" | tee "$out/imagenet_bench.txt"
  python - "$out" "$teacher" <<'EOF'
import json, os, re, sys
out, teacher = sys.argv[1], sys.argv[2]
record = [json.loads(l) for l in open(os.path.join(out, 'imagenet_kd.metrics.jsonl'))][-1]
step = json.load(open(os.path.join(out, 'imagenet_bench.json')))['methods'][
    'configs/imagenet.py:kd']
# The loop's rate between its first and last progress lines (each fetches its
# step's loss, so waits for it): after compilation and start-up.
lines = re.findall(r'^I\d{4} (\d\d):(\d\d):([\d.]+) .*\] step (\d+)/\d+ ',
                   open(os.path.join(out, 'imagenet_kd.log')).read(), re.M)
(h0, m0, s0, first), (h1, m1, s1, last) = lines[0], lines[-1]
seconds = ((int(h1) - int(h0)) * 3600 + (int(m1) - int(m0)) * 60 + float(s1) - float(s0)) % 86400
steps_per_s = (int(last) - int(first)) / seconds
images_per_s = steps_per_s * step['images_per_step']
report = {
    'teacher': teacher, 'loop_steps_per_s': steps_per_s, 'loop_images_per_s': images_per_s,
    'epoch_time_s': record['epoch_time_s'], 'test_top1': record['test_top1'],
    'test_top5': record['test_top5'], 'step_alone_images_per_s': step['train_images_per_s'],
    # The loop on the stream over the step alone: 1 when device-bound.
    'host_boundness': images_per_s / step['train_images_per_s'],
}
json.dump(report, open(os.path.join(out, 'imagenet.json'), 'w'), indent=2)
print(json.dumps(report, indent=2))
EOF
fi
