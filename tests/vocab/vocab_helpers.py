"""Names the vocabulary tests share."""

#: the base tokenizers of the ``base_tokenizers`` fixture: Llama-2-style, Llama-3-style, the toy world's own
KINDS = ("sentencepiece", "byte_level", "toy")
#: tokens the ``extended`` fixture adds: about as many as the quick world's Thai instructions yield
NEW_TOKENS = 300


def tiny_model(tokenizer, *, tied: bool = False, rows: int | None = None, seed: int = 0):
    """A 2-block random Llama over ``tokenizer`` (``rows`` embedding rows, default its length)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=rows or len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=tied, initializer_range=0.5)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)
