"""Names the vocabulary tests share."""

#: the base tokenizers of the ``base_tokenizers`` fixture: Llama-2-style, Llama-3-style, the toy world's own
KINDS = ("sentencepiece", "byte_level", "toy")
#: tokens the ``extended`` fixture adds: about as many as the quick world's Thai instructions yield
NEW_TOKENS = 300
