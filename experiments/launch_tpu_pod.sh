#!/bin/bash
# SymMIM ViT-B/16 on a TPU VM pod slice: the same command on every worker.
#
#   TPU=my-v5p-64 ZONE=us-east5-a BUCKET=gs://my-bucket IMAGENET=/data/imagenet \
#     bash experiments/launch_tpu_pod.sh
#
# First, once, worker 0 alone prepares the data: tfds records of ImageNet built
# from ILSVRC2012_img_{train,val}.tar in $IMAGENET (on worker 0's disk, or a
# gs:// folder) into the bucket. Hours and ~144 GiB the first time; afterwards
# a check that says there is nothing to do. The workers of the run only check
# that the records are complete and stop with one line if not: they never build.
#
# Then every worker runs one process over its local chips; --distributed lets
# JAX find the coordinator, the process count and this worker's id from the TPU
# metadata. Each process reads its own slice of the tfds split; checkpoints,
# metrics and TensorBoard go to the bucket (process 0 writes the logs, orbax
# coordinates the checkpoint writes of all processes). Re-running the same
# command resumes from the newest checkpoint, after a preemption too.
set -euo pipefail
: "${TPU:?name of the TPU VM}" "${ZONE:?its zone}" "${BUCKET:?gs://bucket for data and runs}"
: "${IMAGENET:?folder of ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (worker 0 or gs://)}"
RUN=${RUN:-symmim_vit_b16}
REPO=${REPO:-~/symmim_jax}   # this repository, copied to every worker beforehand
# The same config flags for both steps: prepare_data checks what this run reads.
CONFIG="--config=symmim_jax/configs/symmim.py:B/16 \
  --config.dataset.data_dir=$BUCKET/tensorflow_datasets \
  --config.batch_size=4096 \
  --config.mesh.data=-1 --config.mesh.fsdp=1"

gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=0 --command="
  cd $REPO && . .venv/bin/activate &&
  python -m symmim_jax.prepare_data $CONFIG --config.dataset.manual_dir=$IMAGENET"

gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="
  cd $REPO && . .venv/bin/activate &&
  python -m symmim_jax.pretrain --distributed $CONFIG --workdir=$BUCKET/runs/$RUN"
# ViT-L/16 or larger batches: --config=symmim_jax/configs/symmim.py:L/16 and shard the
# parameters and Adam moments over the chips of a host: --config.mesh.fsdp=4.
