"""Supervised tasks on top of an upstream, trained by the pretraining ``Trainer``: one task per file.

``base.py`` holds what tasks share; ``ctc.py``, ``frame_phones.py`` and ``speaker.py`` are the tasks;
``finetune.py`` wires data, upstream, task and trainer for ``audiossl-finetune``; ``finetuned.py`` reads a
fine-tuned model back from its checkpoint alone; ``predict.py``, ``lm_tuning.py`` and ``transcribe.py`` use it.
"""
