"""Vocabulary extension for a target script: fewer tokens per word, new rows initialised and trained.

* :func:`pivotune.vocab.extend.extend_tokenizer` — learn target-script tokens from a corpus and add them to
  a BPE tokenizer (SentencePiece-style or byte-level) as new merges; every other text tokenizes as before.
* :func:`pivotune.vocab.init.resize_and_init` — resize a model's embeddings and start each new row as the
  mean of its old pieces' rows (:func:`~pivotune.vocab.init.init_new_rows` for any other [vocab, d] matrix).
* :mod:`pivotune.vocab.train` — new rows trainable with their own learning rate, old rows frozen if asked
  (full fine-tuning) or through peft's trainable tokens (LoRA).
* :func:`pivotune.vocab.save.write_extended` — all of it, written as a plain Hugging Face directory
  (``pivotune vocab extend``); :mod:`pivotune.vocab.measure` — tokens per word and the checks.
* :mod:`pivotune.vocab.settings` — the run config's ``vocab`` section; :mod:`pivotune.vocab.run` — what a
  training run does with it (extend and resize before any method sees the model, train the new rows).

Nothing is imported here, so ``pivotune --help`` stays fast.
"""
