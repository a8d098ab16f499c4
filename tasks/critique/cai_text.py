"""The words of SL-CAI: how a critique and a revision are asked for, and the boilerplate cut from the answers.

Bai et al. 2022 (Constitutional AI, §3 and appendix) show the model the conversation, then a "Critique Request:"
with the drawn principle's critique instruction, the model's critique, then a "Revision Request:" with the
principle's revision instruction. In chat form the requests are user turns and the model's critique is the
assistant turn between them:

    user       <prompt>
    assistant  <current response>
    user       Critique Request: <principle.critique>
    assistant  <critique>                          (generated first)
    user       Revision Request: <principle.revision> Reply with the revised response only.
    assistant  <revision>                          (generated second; the next round's response)

The closing "Reply with the revised response only." is ours, not the paper's: small instruct models otherwise
wrap the rewrite in chatter ("Sure! Here's a revised version: ..."). What they still add is removed by
`strip_boilerplate`, whose rules are the documented `PREFIXES`, `SUFFIXES` and `LEAD_IN` below.
"""

from __future__ import annotations

import re

from tasks.common.constitution import Principle

Messages = list[dict[str, str]]

CRITIQUE_REQUEST = "Critique Request: "
REVISION_REQUEST = "Revision Request: "
REVISION_ONLY = "Reply with the revised response only."


def critique_messages(prompt: Messages, response: str, principle: Principle) -> Messages:
    """The conversation so far, the response, and the principle's critique request."""
    return [
        *prompt,
        {"role": "assistant", "content": response},
        {"role": "user", "content": CRITIQUE_REQUEST + principle.critique},
    ]


def revision_messages(prompt: Messages, response: str, principle: Principle, critique: str) -> Messages:
    """The critique conversation continued with the model's critique and the principle's revision request."""
    return [
        *critique_messages(prompt, response, principle),
        {"role": "assistant", "content": critique},
        {"role": "user", "content": f"{REVISION_REQUEST}{principle.revision} {REVISION_ONLY}"},
    ]


# Boilerplate rules, tried at the start (PREFIXES) and end (SUFFIXES) of a critique or revision, and LEAD_IN
# anywhere, until none matches, so "Sure! Here's a revised response:\n\n**Revision:** ..." loses all three layers.
# Case-insensitive. Each rule is anchored or needs a colon after a named intro, and narrow, so that a real first
# sentence ("Certainly the best film of the year", "Here is what I loved: ...") survives.
_MD = r"[\s*_#>]*"  # markdown emphasis / heading / quote marks around a label: **Revision:**, ## Revised response
_WHAT = r"(?:revis\w*|rewr\w*|version|response|continuation|critique|review|answer|edit\w*|improv\w*|updat\w*)"
# "Here's a revised continuation:", "here is my critique:" — an article, up to three words, what follows, a colon
_LEAD_IN = rf"(?:here(?:'s| is)|below is)\s+(?:a|an|the|my)\s+(?:[\w-]+\s+){{0,3}}?{_WHAT}\b[^\n:.!?]{{0,60}}:"
PREFIXES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        # "Sure!", "Certainly,", "Of course." — only when more boilerplate or a line break follows
        ("assent", r"\A(?:sure|certainly|of course|okay|ok|absolutely|alright)\s*[!.,:]*"
                   r"(?=\s*\n|\s*\Z|\s*(?:here|below|i(?:'ve| have| will|'ll)|let me|revis|rewr|critique|the revis))"),
        # "Here is a revised response:", "Here's my critique:", "Below is the rewritten continuation" + line break,
        # "I have revised the response as follows:" — an intro line naming what follows
        ("intro", r"\A(?:here(?:'s| is| are)|below is|the following is|i(?:'ve| have)\s+(?:revised|rewritten|rewrote))"
                  rf"\b[^\n:]{{0,80}}?\b{_WHAT}\b[^\n:]{{0,60}}(?::|\n)"),
        # "Revision:", "Revised response:", "Critique:", "**Answer:**", or the label alone on its line ("## Revision")
        ("label", rf"\A{_MD}(?:(?:revised|rewritten|improved|updated|new|final)\s+)?"
                  r"(?:revision|rewrite|critique|response|version|continuation|answer)(?:\s*:[*_]*|[*_]*[ \t]*(?=\n))"),
    )
)
SUFFIXES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        # a last paragraph of sign-off: "I hope this helps!", "Let me know if ...", "Feel free to ..."
        ("sign_off", r"\n\s*(?:i hope (?:this|that)|let me know|feel free)[^\n]*\Z"),
        # a last paragraph explaining the rewrite: "This revised version keeps ..."
        ("explanation", r"\n\s*(?:this|the above) (?:revised|rewritten|new) (?:version|response|continuation)[^\n]*\Z"),
        # an intro with nothing after it (the sample ran out of tokens): "... Here's a revised continuation:"
        ("dangling_intro", rf"\s*\b{_LEAD_IN}\Z"),
    )
)
# An intro after some chatter, seen from SmolLM2-135M: "The film has been with us too long. Here's a revised
# continuation:\n\nThe film ..." — the text after the last such intro is the answer.
LEAD_IN = re.compile(rf"\b{_LEAD_IN}\s*", re.IGNORECASE)
# The whole text in one pair of double quotes (straight or curly) with none inside: the model quoted its answer.
_QUOTED = re.compile(r'\A(?:"([^"]*)"|\u201c([^\u201c\u201d]*)\u201d)\Z', re.DOTALL)


def strip_boilerplate(text: str) -> str:
    """The critique or revision without the chatter around it; "" when nothing else was there."""
    out = text.strip()
    while True:
        before = out
        for _, pattern in PREFIXES:
            out = pattern.sub("", out, count=1).lstrip()
        for _, pattern in SUFFIXES:
            out = pattern.sub("", out, count=1).rstrip()
        lead_ins = list(LEAD_IN.finditer(out))
        if lead_ins and out[lead_ins[-1].end():].strip():
            out = out[lead_ins[-1].end():].strip()
        quoted = _QUOTED.match(out)
        if quoted:
            out = (quoted.group(1) if quoted.group(1) is not None else quoted.group(2)).strip()
        if out == before:
            return out
