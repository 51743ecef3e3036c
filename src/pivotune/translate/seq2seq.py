"""Machine translation with a local sequence-to-sequence model: transformers, or CTranslate2 when installed.

Both read the model's language-code convention from its tokenizer
(:mod:`pivotune.translate.codes`), so NLLB-200, M2M-100, mBART-50 and Marian /
OPUS-MT checkpoints work under ISO codes. A batch is one ``generate`` call;
the pipeline sorts texts by length before batching, so padding stays small.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from ..errors import PivotuneError
from ..outputs import replaced_output_dir
from .backends import Translator, Unit
from .codes import Convention, convention_for, marian_pair_langs

log = logging.getLogger(__name__)


class _Seq2Seq(Translator):
    """Tokenizer, language-code convention and cache key shared by both engines."""

    def __init__(self, model: str, *, batch_size: int, num_beams: int, max_new_tokens: int,
                 max_input_tokens: int, engine: str):
        from transformers import AutoConfig

        from ..models.loading import _explain, load_tokenizer

        self.name = str(model).rstrip("/")
        try:
            self.config = AutoConfig.from_pretrained(self.name)
        except Exception as exc:  # noqa: BLE001 - turned into a user-facing message
            raise _explain("translation model", self.name, exc) from exc
        model_type = getattr(self.config, "model_type", "?")
        if model_type not in ("marian", "m2m_100", "mbart"):
            convention_for(model_type, (), self.name)           # raises: unsupported model type, before more loading
        self.tokenizer = load_tokenizer(self.name)
        self.convention: Convention = convention_for(model_type, self.tokenizer.get_vocab(), self.name)
        self.batch_size, self.num_beams = batch_size, num_beams
        self.max_new_tokens, self.max_input_tokens = max_new_tokens, max_input_tokens
        self.key = f"{engine}:{self.name}|beams={num_beams}|max_new_tokens={max_new_tokens}"

    def check_languages(self, src: str, tgt: str) -> None:
        self.convention.resolve(src, role="source")
        self.convention.resolve(tgt, role="target")
        if self.convention.name == "marian-pair":
            pair = marian_pair_langs(self.name)
            if pair and (pair[0] not in (src, _iso3(src)) or pair[1] not in (tgt, _iso3(tgt))):
                raise PivotuneError(f"model '{self.name}' translates {pair[0]}->{pair[1]} only (a single-pair "
                                    f"OPUS-MT model), but {src}->{tgt} was asked for. Use the OPUS-MT model for "
                                    f"{src}-{tgt}, or a many-to-many model such as NLLB-200.")

    def _prepare(self, texts: list[str], src: str, tgt: str) -> tuple[list[str], str | None]:
        """Source texts as the model wants them, and the target-language token to force first (if any)."""
        conv = self.convention
        if conv.name == "marian-multi":
            return [f"{conv.resolve(tgt)} {t}" for t in texts], None
        if conv.name == "marian-pair":
            return texts, None
        self.tokenizer.src_lang = conv.resolve(src, role="source")
        code = conv.resolve(tgt)
        return texts, (f"__{code}__" if conv.name == "m2m100" else code)

    def _encode(self, texts: list[str], **kwargs):
        return self.tokenizer(texts, truncation=True, max_length=self.max_input_tokens, **kwargs)


def _iso3(lang: str) -> str:
    from ..languages import FLORES_CODES

    return FLORES_CODES.get(lang, "_").split("_")[0]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFSeq2SeqTranslator(_Seq2Seq):
    """``AutoModelForSeq2SeqLM.generate`` on batches of sentences, on CPU or GPU."""

    def __init__(self, model: str, *, device: str | None = None, dtype: str = "float32", batch_size: int = 16,
                 num_beams: int = 1, max_new_tokens: int = 256, max_input_tokens: int = 512):
        super().__init__(model, batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
                         max_input_tokens=max_input_tokens, engine="hf")
        from transformers import AutoModelForSeq2SeqLM

        from ..models.loading import load_pretrained

        self.device = device or default_device()
        self.model = load_pretrained(AutoModelForSeq2SeqLM, self.name, what="translation model",
                                     dtype=dtype).to(self.device)
        self.model.eval()

    def translate(self, units: list[Unit], src: str, tgt: str) -> list[str]:
        import torch

        texts, forced = self._prepare([u.text for u in units], src, tgt)
        enc = self._encode(texts, return_tensors="pt", padding=True).to(self.device)
        extra = {} if forced is None else {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids(forced)}
        with torch.inference_mode():
            out = self.model.generate(**enc, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                      do_sample=False, **extra)
        self.calls += 1
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


class CTranslate2Translator(_Seq2Seq):
    """The same model run by CTranslate2 (converted once from the Hugging Face checkpoint, then reused)."""

    def __init__(self, model: str, *, ct2_dir: str | Path | None = None, device: str | None = None,
                 compute_type: str = "default", batch_size: int = 32, num_beams: int = 1,
                 max_new_tokens: int = 256, max_input_tokens: int = 512, force: bool = False):
        try:
            import ctranslate2
        except ImportError:
            raise PivotuneError("--engine ctranslate2 needs the ctranslate2 package (pip install ctranslate2); "
                                "or use the default --engine hf.") from None
        super().__init__(model, batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
                         max_input_tokens=max_input_tokens, engine="ct2")
        tag = hashlib.sha256(self.name.encode()).hexdigest()[:12]
        self.ct2_dir = Path(ct2_dir) if ct2_dir else Path.home() / ".cache" / "pivotune" / "ct2" / tag
        if not (self.ct2_dir / "model.bin").is_file():
            self._convert(force)
        try:
            self.model = ctranslate2.Translator(str(self.ct2_dir), device=device or default_device(),
                                                compute_type=compute_type)
        except (RuntimeError, ValueError) as exc:
            raise PivotuneError(f"CTranslate2 could not load {self.ct2_dir}: {exc}. Delete that directory to "
                                "convert the model again.") from None

    def _convert(self, force: bool) -> None:
        from ctranslate2.converters import TransformersConverter

        from ..models.loading import refuse_pickled_weights

        refuse_pickled_weights(self.name)   # the converter loads the weights with transformers itself
        log.info("converting %s to CTranslate2 format in %s (once)", self.name, self.ct2_dir)
        # --ct2-dir is replaced as a whole: never a directory that holds something else (or the model itself)
        with replaced_output_dir(self.ct2_dir, "translate --engine ctranslate2", force=force,
                                 inputs=[self.name]) as tmp:
            try:
                TransformersConverter(self.name).convert(str(tmp))
            except Exception as exc:  # noqa: BLE001 - the converter raises many types
                shutil.rmtree(tmp, ignore_errors=True)
                raise PivotuneError(f"CTranslate2 could not convert '{self.name}': {type(exc).__name__}: {exc}. "
                                    "Use --engine hf for this model.") from None

    def translate(self, units: list[Unit], src: str, tgt: str) -> list[str]:
        texts, forced = self._prepare([u.text for u in units], src, tgt)
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in self._encode(texts)["input_ids"]]
        results = self.model.translate_batch(
            tokens, target_prefix=None if forced is None else [[forced]] * len(tokens),
            beam_size=self.num_beams, max_decoding_length=self.max_new_tokens, max_batch_size=self.batch_size)
        self.calls += 1
        out = []
        for r in results:
            hyp = r.hypotheses[0]
            if forced is not None and hyp[:1] == [forced]:
                hyp = hyp[1:]
            ids = self.tokenizer.convert_tokens_to_ids(hyp)
            out.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return out
