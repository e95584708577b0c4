"""Dispatch rules (派单规则): a centre's own "a ticket that says these words goes to that department".

A hotline centre keeps rules the model must not overrule: 燃气泄漏 to the gas utility's emergency
line whatever else the ticket says, a matter moved from one department to another by a 机构改革
before the history shows it, a category that a 分类目录 fixes by its keywords. A rule names one or
more keywords, all of which must occur in the ticket (title or text), optionally words none of which
may occur, and the department or the category (or both) it sends the ticket to, with the decision
(``auto``, the default, or ``review`` for a suggestion a person confirms). A keyword may be a list
of alternatives, any one of which will do: ``燃气|煤气 泄漏|漏气`` is one rule for the four ways a
ticket may say a gas leak, where plain keywords would need four rules.

Rules are part of the model (``paidan train --rules``): the router applies them wherever it
decides, so the HTTP API, the dispatcher's page, ``paidan predict``, batch labelling and evaluation
all decide alike, and the model version an answer names says which rules decided it. The first
rule that matches a ticket decides its head; the model still scores every label, so the answer shows
how likely the model finds the rule's label, the other candidates and the words behind them.
Keywords are matched as the model reads a text: normalised (full-width to half-width, lower case),
in the script the model reads, with personal numbers masked.

A rule marked ``new_label`` may name a label the model never learnt: a department a 机构改革 has
just created, which no past ticket names yet. The router then suggests that label as any other
(it ranks after the learnt ones, with the probability 0 the model gives a label it has no ticket
of, and is put first where the rule matches), until a retrain on tickets that name it learns it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from model.text import Script, clean

RuleDecision = Literal["auto", "review"]
RULE_DECISIONS: tuple[RuleDecision, ...] = ("auto", "review")
# What separates the keywords of one cell: whitespace, or the commas and 、 a list is written with.
_SEPARATORS = re.compile(r"[\s,，、;；]+")
# What separates the alternatives of one keyword (half- or full-width bar); a term keeps them
# joined by ALTERNATIVE.
ALTERNATIVE = "|"
_ALTERNATIVES = re.compile(r"[|｜]+")


def rule_terms(cell: str, script: Script = "as_written") -> tuple[str, ...]:
    """The keywords of a rule's cell as the model reads them (:func:`model.text.clean`), in order,
    each once: ``"燃气 泄漏、ＬＰＧ"`` gives ``("燃气", "泄漏", "lpg")``, and ``"燃气｜煤气 泄漏"``
    ``("燃气|煤气", "泄漏")``: a keyword's alternatives, each once, joined by :data:`ALTERNATIVE`."""
    terms = []
    for part in _SEPARATORS.split(cell):
        choices = (clean(choice, script) for choice in _ALTERNATIVES.split(part))
        terms.append(ALTERNATIVE.join(dict.fromkeys(c for c in choices if c)))
    return tuple(dict.fromkeys(t for t in terms if t))


def term_words(terms: Sequence[str]) -> frozenset[str]:
    """Every word of ``terms`` (:func:`rule_terms`), each alternative a word of its own."""
    return frozenset(w for term in terms for w in term.split(ALTERNATIVE))


@dataclass(frozen=True)
class DispatchRule:
    """One rule: where a ticket holding all of ``keywords`` and none of ``exclude`` goes.

    Parameters
    ----------
    keywords : tuple of str
        Words that must all occur, as :func:`rule_terms` reads them (a term of alternatives,
        ``燃气|煤气``, occurs when one of them does).
    department, category : str
        The labels it sends the ticket to ("" for a head it leaves to the model); one at least.
    exclude : tuple of str, default ()
        Words none of which may occur (each alternative of a term among them).
    decision : {"auto", "review"}, default "auto"
        Dispatch without a person, or suggest the label for a person to confirm.
    note : str, default ""
        Why the rule exists (its notice, its 文件号), shown with each answer it decides.
    source : str, default ""
        Where it was read (``rules.csv row 3``), for messages.
    new_label : bool, default False
        Its labels may be ones the model never learnt (see the module's docstring); unmarked, such
        a label is refused when the model is trained, as a misspelling.
    """

    keywords: tuple[str, ...]
    department: str = ""
    category: str = ""
    exclude: tuple[str, ...] = ()
    decision: RuleDecision = "auto"
    note: str = ""
    source: str = ""
    # A class attribute too, so rules pickled before the field existed read False.
    new_label: bool = False

    def label(self, head: str) -> str:
        """The label it gives head ``head`` ("" when it leaves that head to the model)."""
        return self.department if head == "department" else self.category


class RuleIndex:
    """Rules prepared for matching many texts: each distinct word is looked for once per text,
    then each rule is a set comparison (measured: 200 rules cost 160 µs a 50-character ticket
    tried one by one, with their words looked for again by every rule that has them)."""

    def __init__(self, rules: tuple[DispatchRule, ...]) -> None:
        self.rules = rules
        self.words = tuple(
            sorted(term_words([t for r in rules for t in (*r.keywords, *r.exclude)]))
        )
        # Plain keywords must all be present; of each term of alternatives, one at least.
        self.required = [frozenset(t for t in r.keywords if ALTERNATIVE not in t) for r in rules]
        self.choices = [
            tuple(term_words([t]) for t in r.keywords if ALTERNATIVE in t) for r in rules
        ]
        self.excluded = [term_words(r.exclude) for r in rules]
        self.new_label = any(r.new_label for r in rules)
        self._labels: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def labels(self, head: str, learnt: Sequence[str]) -> Sequence[str]:
        """Head ``head``'s labels as its rankings number them: the ``learnt`` ones, then those only
        a ``new_label`` rule gives it, in the rules' order (read once per head)."""
        if not self.new_label:
            return learnt
        key = (head, tuple(learnt))
        if key not in self._labels:
            known = set(learnt)
            new = (r.label(head) for r in self.rules if r.new_label and r.label(head))
            self._labels[key] = key[1] + tuple(dict.fromkeys(x for x in new if x not in known))
        return self._labels[key]

    def first(self, texts: list[str], heads: tuple[str, ...]) -> dict[str, list[int]]:
        """Per head, for each prepared text (:meth:`model.compiled.CompiledFeatures.texts`), the
        index of the first rule that matches it (all its keywords occur in the text, one of each
        keyword's alternatives, none of its excluded words) and gives that head a label, or -1.
        Heads no rule names are left out."""
        named = [h for h in heads if any(r.label(h) for r in self.rules)]
        out: dict[str, list[int]] = {h: [-1] * len(texts) for h in named}
        for i, text in enumerate(texts):
            present = {w for w in self.words if w in text}
            if not present:
                continue
            for j, (required, choices, excluded) in enumerate(
                zip(self.required, self.choices, self.excluded, strict=True)
            ):
                if (
                    required <= present
                    and all(choice & present for choice in choices)
                    and not excluded & present
                ):
                    for head in named:
                        if out[head][i] < 0 and self.rules[j].label(head):
                            out[head][i] = j
                    if all(out[h][i] >= 0 for h in named):
                        break
        return out
