"""Build target-language data from English: a resumable MT pipeline and its translators.

``pipeline.translate_file`` is the entry point; ``backends`` and ``seq2seq`` hold the
translators, ``cache`` the SQLite store, ``protect`` sentence splitting and protected
spans, ``codes`` each model family's language codes. Nothing is imported here, so
``pivotune --help`` stays fast.
"""
