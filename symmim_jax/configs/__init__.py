"""Configs as code: three bases and one short file per preset.

`common.py` holds the fields of every run; `base_pretrain.py`,
`base_finetune.py` and `base_probe.py` add what pretraining, fine-tuning and
linear probing read. A preset overrides a few fields and may take a size,
big_vision style: `--config=symmim_jax/configs/symmim.py:L/16`. Any field can
then be overridden on the command line: `--config.batch_size=1024`.
"""
