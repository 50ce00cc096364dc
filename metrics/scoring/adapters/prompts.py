"""The prompts of the generative scores, and where the caption and the answer fall among their tokens.

`vqa` (VQAScore, Lin et al. 2024) asks the model a yes/no question about the caption and reads P("Yes") at the
answer position; `likelihood` asks it for a caption and reads the mean log-probability of the candidate's tokens as
the answer. The prompt goes through the processor's chat template as a user turn holding the image and the text,
with the assistant turn opened; a model without a chat template needs `template`, a format string around `{prompt}`
that also places the image token where its processor expects one.

>>> prompts = GenerativePrompts(template="USER: <image>\\n{prompt} ASSISTANT:")
>>> prompts.text("vqa", "a dog on a sofa", processor=None)
'USER: <image>\\nDoes this figure show "a dog on a sofa"? Please answer yes or no. ASSISTANT:'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aro.core.errors import InvalidInput

SCORES = ("vqa", "likelihood")


@dataclass(frozen=True)
class GenerativePrompts:
    """What a generative model is asked; every field is recorded in `results.json`.

    `question` holds `{caption}`; `caption_prompt` is the request answered by the caption itself; `answer` is the
    token whose probability is VQAScore, `negative_answer` the one it is weighed against in the recorded yes-rates;
    `template` (a format string around `{prompt}`) replaces the processor's chat template.
    """

    question: str = 'Does this figure show "{caption}"? Please answer yes or no.'
    caption_prompt: str = "Write a short caption for this image."
    answer: str = "Yes"
    negative_answer: str = "No"
    template: str | None = None

    def prompt(self, score: str, caption: str) -> str:
        """The user's words: the question about `caption` (vqa) or the caption request (likelihood)."""
        return self.question.replace("{caption}", caption) if score == "vqa" else self.caption_prompt

    def text(self, score: str, caption: str, processor) -> str:
        """The whole text of one (image, caption) pair, up to the answer position (vqa) or through the caption
        (likelihood, where the caption is the assistant's answer)."""
        turn = self.turn(self.prompt(score, caption), processor)
        return turn if score == "vqa" else turn + caption

    def turn(self, prompt: str, processor) -> str:
        """A user turn with the image and `prompt`, the assistant's turn opened."""
        if self.template is not None:
            return self.template.replace("{prompt}", prompt)
        if (
            getattr(processor, "chat_template", None) is None
            and getattr(getattr(processor, "tokenizer", None), "chat_template", None) is None
        ):
            raise InvalidInput(
                f"{type(processor).__name__} has no chat template: pass --prompt-template, a format string around "
                "{prompt} with the image token where the model expects it (e.g. 'USER: <image>\\n{prompt} ASSISTANT:')"
            )
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def record(self) -> dict:
        return asdict(self)


def common_prefix_length(first: list[int], second: list[int]) -> int:
    """How many leading tokens two sequences share."""
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length


def end_tokens(tokenizer) -> list[int]:
    """The tokens the tokenizer writes after every text (XLM-R's and Kosmos-2's `</s>`; none for most decoders').

    They close a text, and are no part of a question or of a caption the model is asked to continue: a model answers
    right after the prompt's last word, not after an end token it would never see at generation.
    """
    words = tokenizer("a", add_special_tokens=False)["input_ids"]
    written = tokenizer("a")["input_ids"]
    for start in range(len(written) - len(words) + 1):
        if written[start : start + len(words)] == words:
            return written[start + len(words) :]
    return []


def without_end(ids: list[int], end: list[int]) -> list[int]:
    """`ids` without the tokenizer's end tokens `end` (see `end_tokens`) where it ends with them."""
    return ids[: len(ids) - len(end)] if end and ids[-len(end) :] == end else ids


def answer_token_id(tokenizer, prompt_text: str | None, answer: str) -> int:
    """The id of `answer` written at the answer position of `prompt_text`, as the tokenizer writes it there (None:
    the answer is the first token of a decoder, an encoder-decoder model's).

    The token is found by tokenizing the prompt with and without the answer appended (the tokenizer's end tokens
    left off: the answer is the first token the model would write), so that a tokenizer that marks word starts
    (SentencePiece's "▁Yes") gives the token a model would generate; an answer that is not exactly one new token
    there is refused.
    """
    if prompt_text is None:
        without, with_answer = [], tokenizer(answer, add_special_tokens=False)["input_ids"]
    else:
        end = end_tokens(tokenizer)
        without, with_answer = (
            without_end(ids, end) for ids in tokenizer([prompt_text, prompt_text + answer])["input_ids"]
        )
    shared = common_prefix_length(without, with_answer)
    added = with_answer[shared:]
    if shared != len(without) or len(added) != 1:
        pieces = tokenizer.convert_ids_to_tokens(added)
        where = "after the prompt" if prompt_text is not None else "alone"
        raise InvalidInput(
            f"the tokenizer writes the answer {answer!r} {where} as {pieces} (not one new token): VQAScore needs a "
            "single-token answer; choose another answer word (--answer) or --prompt-template"
        )
    return added[0]
