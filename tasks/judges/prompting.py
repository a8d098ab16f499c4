"""How a comparison is put to a model judge (Bai et al. 2022, RL-CAI; Lee et al. 2023, RLAIF).

The judge sees the conversation, the principle's comparison instruction and the two options as (A) and (B); the
few-shot examples of the constitution come first as earlier turns. A local model's answer is read from its
next-token distribution after `ANSWER_PREFIX` (only the two letters are compared, so the label is soft); an
endpoint without log-probs answers in text, parsed by `parse_choice`. With chain of thought the judge writes its
reasoning first and then the same answer line.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.common.constitution import Constitution, FewShot, Principle

PROMPT_VERSION = "rlcai-v1"  # part of every cache key: changing the wording below must re-ask, not reuse
ANSWER_PREFIX = "The better response is ("
SYSTEM = (
    "You compare two responses of an AI assistant to the same conversation, following one principle. "
    "Judge only by the principle."
)
DIRECT = "Answer with (A) or (B)."
FALLBACK_COMPARISON = "Which response is more helpful, honest and harmless?"  # a question asked without a principle
REASONED = "First explain your reasoning briefly, then finish with: The better response is (A) or (B)."

Messages = list[dict[str, str]]


def render_conversation(prompt: Messages) -> str:
    """Human/Assistant transcript of the conversation so far (the system prompt is context, shown as such)."""
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in prompt)


def comparison_text(prompt: Messages, first: str, second: str, principle: Principle | str | None, cot: bool) -> str:
    instruction = principle.comparison if isinstance(principle, Principle) else principle or FALLBACK_COMPARISON
    return (
        "Consider the following conversation between a human and an assistant:\n\n"
        f"{render_conversation(prompt)}\n\n{instruction}\n\nOptions:\n(A) {first}\n(B) {second}\n\n"
        f"{REASONED if cot else DIRECT}"
    )


def judge_messages(
    prompt: Messages, first: str, second: str, principle: Principle | None, constitution: Constitution | None, cot: bool
) -> Messages:
    """Chat messages for one ordered comparison, few-shot examples (if any) first."""
    msgs: Messages = [{"role": "system", "content": SYSTEM}]
    for shot in constitution.few_shot if constitution else ():
        msgs += _shot_turns(shot, constitution, cot)
    msgs.append({"role": "user", "content": comparison_text(prompt, first, second, principle, cot)})
    return msgs


def _shot_turns(shot: FewShot, constitution: Constitution, cot: bool) -> Messages:
    convo = [{"role": "user", "content": shot.prompt}]
    question = comparison_text(convo, shot.a, shot.b, constitution.get(shot.principle), cot)
    answer = f"{ANSWER_PREFIX}{shot.answer})."
    if cot and shot.reasoning:
        answer = f"{shot.reasoning.strip()}\n{answer}"
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


_PAREN = re.compile(r"\(\s*([AB])\s*\)")
_BARE = re.compile(r"(?:^|[^A-Za-z])([AB])(?:[^A-Za-z]|$)")


def parse_choice(text: str) -> str | None:
    """The letter a text answer settles on: the last "(A)"/"(B)", else a lone trailing A/B; None if neither."""
    found = _PAREN.findall(text or "")
    if found:
        return found[-1]
    bare = _BARE.findall((text or "").strip()[-8:])
    return bare[-1] if bare else None


def strip_answer(reasoning: str) -> str:
    """Reasoning up to (not including) any answer line the model already wrote."""
    cut = reasoning.find(ANSWER_PREFIX.rstrip(" ("))
    return (reasoning if cut < 0 else reasoning[:cut]).strip()


def letter_probabilities(top_logprobs: list[dict[str, Any]]) -> float | None:
    """p(A) from an OpenAI-style top_logprobs list, normalised over the two letters; None when neither is there."""
    import math

    best: dict[str, float] = {}
    for entry in top_logprobs or []:
        token = str(entry.get("token", "")).strip().strip("()").strip()
        if token in ("A", "B") and token not in best:
            best[token] = float(entry["logprob"])
    if not best:
        return None
    la, lb = best.get("A", -math.inf), best.get("B", -math.inf)
    m = max(la, lb)
    ea, eb = math.exp(la - m), math.exp(lb - m)
    return ea / (ea + eb)
