"""Prompt templates: render a sample into (prompt, response) text.

Alpaca's template is the default because the PROM paper follows Alpaca; a
tokenizer's own chat template is used when the config asks for ``chat``.
"""

from __future__ import annotations

from .records import Sample

ALPACA_PROMPT = (
    "Below is an instruction that describes a task{with_input}. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
)
_INPUT_BLOCK = "### Input:\n{input}\n\n"
_WITH_INPUT = ", paired with an input that provides further context"


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt up to and including ``### Response:\\n``."""
    if input:
        return ALPACA_PROMPT.format(with_input=_WITH_INPUT, instruction=instruction,
                                    input_block=_INPUT_BLOCK.format(input=input))
    return ALPACA_PROMPT.format(with_input="", instruction=instruction, input_block="")


def render_alpaca(sample: Sample) -> tuple[str, str]:
    """(prompt, response) for an Alpaca-form sample; chat samples use their turns."""
    if sample.messages is not None:
        turns = list(sample.messages)
        user = "\n\n".join(m["content"] for m in turns if m["role"] == "user")
        reply = "\n\n".join(m["content"] for m in turns if m["role"] == "assistant")
        return alpaca_prompt(user), reply
    return alpaca_prompt(sample.instruction, sample.input), sample.output
