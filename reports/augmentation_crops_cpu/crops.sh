#!/bin/bash
# the first pair ran both from /work/main's editable install (the script's directory, not the cwd, leads sys.path): both were new crops
M=/tmp/expout/imit/models/imitation_0.25x.pt
T=/work/main/compress/assets/mbv2_fmnist_teacher.pt
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1
echo "# started $(date -u +%FT%TZ); old = PYTHONPATH=/tmp/exp (1bd6d3f: per-batch offset, padded with the mean), new = PYTHONPATH=/tmp/exp2 (per-image offset, padded with black)"
run() { (cd /tmp/$1 && PYTHONPATH=/tmp/$1 python -c "import compress.data as d; print('#', d.__file__, hasattr(d, 'random_crops'))" && PYTHONPATH=/tmp/$1 python reports/finetune_recipe_cpu/recipe_probe.py $M $T --seed $2 --lr 0.03 --batch-size 128 | sed "s/^/$1: /"); }
run exp 0 & run exp2 1 & wait
run exp 1
echo "# finished $(date -u +%FT%TZ)"
