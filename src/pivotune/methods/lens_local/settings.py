"""Lens-local's settings: the run config's ``lens_local`` section."""

from __future__ import annotations

from pydantic import Field

from ...settings import Strict


class LensLocalSettings(Strict):
    """Lens-local (METHODS.md, "lens-local"): layer-localised tuning where the logit lens says the model switches
    to the target language. Used by method ``lens-local`` only.

    The split layer k is read from the base model's logit lens, with the evidence of PROM's regulation
    (``prom.probe`` or ``prom.probe_pairs``): per target language, the lowest layer from which the target language
    leads at every layer up to the top; over several languages, the lowest of them (so every language's switch lies
    in the trained blocks); at most N-1, so that at least the top block trains. Blocks k+1..N train on the target
    data (roles tgt and mt); everything below, the embeddings included, stays frozen.
    """

    split_layer: int | None = Field(
        None, ge=0, description="The split layer k (0 <= k <= N-1 for an N-block model): blocks k+1..N train. "
        "Default: from the base model's logit lens (the evidence of prom.probe or prom.probe_pairs).")
    head: bool = Field(
        False, description="Also train the final norm and the unembedding W_U (in models that tie W_U to the input "
        "embedding, the embedding trains with it). Not with LoRA.")
