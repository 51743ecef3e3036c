"""The English template grammar of the toy world.

Everything is lower case and tokens are separated by single spaces (punctuation
included: ``anna lives in rome .``), so a word-by-word lexicon translates it
exactly. Every generator takes an explicit ``random.Random``; nothing reads
global random state or Python's (randomised) ``hash``.

Train/eval disjointness is by construction: a pair of people, or a (name, a, b)
word problem, is *reserved* for evaluation by a seeded rule
(:meth:`Grammar.pair_reserved`, :meth:`Grammar.problem_reserved`); every
training-side generator draws only unreserved combinations, every eval generator
only reserved ones, so an eval passage is about two people never seen together
in training. The facts a passage states are drawn uniformly: reserving (name,
value) facts instead taught a small model that a reserved fact never occurs, and
it refused to copy exactly the facts it was tested on. Bare arithmetic facts
(``3 plus 4 is 7 .``) name no entity and are general knowledge, like a real LM
knowing sums.

The world's *known facts* (:attr:`Grammar.kb`: where each person was born, their
father's job, the thing they want) use relations that passages never ask about,
so reading a passage never competes with a memorised answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..analysis.probe_items import CLOZE_GAP as GAP

NAMES = ("anna ben clara david emma felix greta hugo iris jonas karin leo maria nils olga paul "
         "rosa sven tina umar vera walter yara zeno ida omar lena mark").split()
PLACES = ("rome paris oslo cairo lima tokyo berlin madrid dublin vienna athens delhi quito riga "
          "sofia lagos hanoi seoul bern minsk").split()
JOBS = "baker pilot teacher doctor farmer singer painter driver nurse writer cook tailor".split()
COLORS = "red blue green black white yellow brown grey".split()
THINGS = "car bike hat boat bag kite lamp coat".split()          # owned, take a colour
OBJECTS = ("apple", "book", "pen", "cup", "ball", "egg", "coin", "card", "shell", "stone")
PLURAL = {o: o + "s" for o in OBJECTS}
SIZES = "big small old new".split()
LANG_WORDS = {"en": "english", "el": "greek", "th": "thai", "ar": "arabic"}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}

# Word classes the word-order transform of a target language may use.
ADJECTIVES = frozenset(COLORS + SIZES)
NOUNS = frozenset(THINGS + list(OBJECTS) + list(PLURAL.values()))

# Instruction wordings: the first of each pool is the one evaluation uses.
QA_INSTRUCTIONS = ("answer the question about the text .",
                   "read the text and answer the question .",
                   "use the text to answer the question .")
MATH_INSTRUCTIONS = ("solve the problem .", "answer the math question .",
                     "work out the answer to the problem .")
COMPLETE_INSTRUCTIONS = ("complete the sentence .", "finish the sentence .")
ABOUT_INSTRUCTIONS = ("write a sentence about {name} .", "tell me a fact about {name} .")
LIST_INSTRUCTIONS = ("list {n} {cat} .", "name {n} {cat} .")
ARITH_INSTRUCTIONS = ("what is {a} {op} {b} ?", "compute {a} {op} {b} .")
TRANSLATE_INSTRUCTIONS = ("translate the sentence from english to {lang} .",
                          "translate the following sentence from english to {lang} .",
                          "give the {lang} translation of the sentence .")
QA_INPUT = "{context} question : {question}"  # as in the pretraining prose
CATEGORIES = {"colors": COLORS, "jobs": JOBS, "places": PLACES, "names": NAMES}

FACT_TEMPLATES = {"place": "{name} was born in {place} .", "job": "the father of {name} is a {job} .",
                  "thing": "{name} wants a {color} {thing} ."}
# one fact per sentence, each naming its person, so the answer to a question sits right after its cue
PERSON_SENTENCE = "{name} lives in {place} . {name} works as a {job} . {name} has a {color} {thing} ."
QUESTIONS = {  # question template -> the slot that answers it
    "where does {name} live ?": "place",
    "what is the job of {name} ?": "job",
    "what color is the {thing} of {name} ?": "color",
    "what does {name} have ?": "thing",
    "who lives in {place} ?": "name",
    "who works as a {job} ?": "name",
}
PROBLEMS = {
    "plus": "{name} has {a} {objs} and buys {b} more . how many {objs} does {name} have now ?",
    "minus": "{name} has {a} {objs} and gives away {b} . how many {objs} does {name} have now ?",
    "times": "{name} has {a} boxes with {b} {objs} in each box . how many {objs} does {name} have ?",
}
SOLUTION = "{a} {op} {b} is {c} ."
SOLVED = "so {name} has {c} {objs} ."
PLAIN = ("the {color} {thing} is {size} .", "{name} likes {objs} .",
         "{name} reads a book in {place} .", "the {thing} of {name} is {color} .",
         "a {job} from {place} has {a} {objs} .", "{name} and {name2} meet in {place} .",
         "the {size} {thing} is in {place} .")
READING_QA = "question : {question} answer : {answer} ."
#: pretraining document kinds and their weights in English text ("facts" and "gap_fill" state the known facts)
DOC_KINDS = {"facts": 0.08, "gap_fill": 0.08, "reading": 0.52, "arith": 0.08, "problem": 0.16, "plain": 0.08}
#: a gap-fill exercise (a genre of the corpus, and the line of the lens's cloze probe): ``{sentence}`` holds ``___``
GAP_FILL = "{sentence} answer : {answer}"
#: the knowledge base's gap sentences: (fact template, the slot its gap leaves open)
KB_GAPS = (("place", "place"), ("job", "job"), ("thing", "color"), ("thing", "thing"))
BILINGUAL = "{src_lang} : {src} {tgt_lang} : {tgt}"

OPERAND_MAX = {"plus": 10, "minus": 10, "times": 5}   # small numbers: sums a small model can memorise
_SLOT = re.compile(r"\{[a-z0-9_]+\}")


def _literal_words(*templates: str) -> set[str]:
    words = set()
    for t in templates:
        words.update(w for w in _SLOT.sub(" ", t).split() if not _is_punct(w))
    return words


def _is_punct(tok: str) -> bool:
    return all(not c.isalnum() for c in tok)


def vocabulary() -> list[str]:
    """Every English word the grammar can produce, sorted (punctuation and digits excluded)."""
    words = set(NAMES + PLACES + JOBS + COLORS + THINGS + SIZES) | set(OBJECTS) | set(PLURAL.values())
    words |= set(LANG_WORDS.values()) | set(NUMBER_WORDS.values()) | set(CATEGORIES)
    words |= _literal_words(*QA_INSTRUCTIONS, *MATH_INSTRUCTIONS, *COMPLETE_INSTRUCTIONS,
                            *ABOUT_INSTRUCTIONS, *LIST_INSTRUCTIONS, *ARITH_INSTRUCTIONS,
                            *TRANSLATE_INSTRUCTIONS, QA_INPUT, *FACT_TEMPLATES.values(),
                            PERSON_SENTENCE, *QUESTIONS, *PROBLEMS.values(), SOLUTION, SOLVED,
                            *PLAIN, READING_QA, GAP_FILL)
    words |= set(OPERAND_MAX)
    return sorted(words)


@dataclass(frozen=True)
class QAItem:
    context: str
    question: str
    answer: str
    occurrence: int          # which whole-word occurrence of ``answer`` in ``context`` (0-based)
    facts: tuple             # ((name, value), ...) of every fact in the context


@dataclass(frozen=True)
class MathItem:
    question: str
    op: str
    a: int
    b: int
    answer: int
    name: str
    objs: str

    @property
    def solution(self) -> str:
        return SOLUTION.format(a=self.a, op=self.op, b=self.b, c=self.answer)


def apply_op(op: str, a: int, b: int) -> int:
    return {"plus": a + b, "minus": a - b, "times": a * b}[op]


def gapped(sentence: str, word: str) -> str:
    """``sentence`` with ``word`` (which it holds once) replaced by the gap ``___``."""
    words = sentence.split(" ")
    if words.count(word) != 1:
        raise ValueError(f"{sentence!r} must hold {word!r} exactly once to be gapped")
    words[words.index(word)] = GAP
    return " ".join(words)


def word_occurrence(text: str, word: str, start: int) -> int:
    """Index among whole-word occurrences of ``word`` of the one beginning at ``start``."""
    return sum(1 for m in re.finditer(rf"(?<!\S){re.escape(word)}(?!\S)", text) if m.start() < start)


class Grammar:
    """English generators for one world seed; holds the knowledge base and the reservation rule."""

    def __init__(self, seed: int, reserve_every: int = 4):
        rng = random.Random(f"pivotune-grammar:{seed}")
        # Seeded ranks make the reservation pattern differ between seeds but never between runs.
        order = list(NAMES)
        rng.shuffle(order)
        self._rank = {w: i for i, w in enumerate(order)}
        self.reserve_every = reserve_every
        self.kb = {name: {"place": rng.choice(PLACES), "job": rng.choice(JOBS), "color": rng.choice(COLORS),
                          "thing": rng.choice(THINGS)} for name in NAMES}   # the world's known facts

    # -- reservation -------------------------------------------------------------------------
    def pair_reserved(self, name: str, other: str) -> bool:
        """Whether two (different) people are seen together only in evaluation; symmetric."""
        return (self._rank[name] + self._rank[other]) % self.reserve_every == 0

    def problem_reserved(self, name: str, op: str, a: int, b: int) -> bool:
        # Symmetric in (a, b) and blind to the operation: a reserved name and number pair
        # never appears in training in any order or operation.
        return (self._rank[name] + a + b + a * b) % self.reserve_every == 0

    # -- facts and passages --------------------------------------------------------------------
    def kb_fact(self, rng: random.Random, name: str | None = None) -> str:
        name = name or rng.choice(NAMES)
        f = self.kb[name]
        kind = rng.choice(sorted(FACT_TEMPLATES))
        return FACT_TEMPLATES[kind].format(name=name, **f)

    def kb_gap(self, name: str, fact: str, slot: str) -> tuple[str, str]:
        """(the known fact ``fact`` about ``name``, the word of ``slot`` in it): a gap sentence and its answer."""
        return FACT_TEMPLATES[fact].format(name=name, **self.kb[name]), self.kb[name][slot]

    def qa_item(self, rng: random.Random, eval_split: bool, n_people: int | None = None) -> QAItem:
        """A passage about 1-2 people (eval: 2, a reserved pair), one question whose answer is a single word of it.

        Few people per passage keeps the copy task learnable for a model of a few million
        parameters; eval passages always have two, so the right person must be found.
        """
        n_people = n_people or (2 if eval_split else rng.choice((1, 2, 2)))
        if n_people == 1 and eval_split:
            raise ValueError("an eval passage is about a reserved pair of people")
        while True:
            names = rng.sample(NAMES, n_people)
            if n_people == 1 or self.pair_reserved(*names) == eval_split:
                break
        people, used = [], set()
        for name in names:
            slots = {"name": name}
            for key, pool in (("place", PLACES), ("job", JOBS), ("color", COLORS), ("thing", THINGS)):
                slots[key] = rng.choice([v for v in pool if v not in used])   # distinct, so every answer is one word
                used.add(slots[key])
            people.append(slots)
        context = " ".join(PERSON_SENTENCE.format(**p) for p in people)
        target = rng.choice(people)
        question = rng.choice(sorted(QUESTIONS))
        answer = target[QUESTIONS[question]]
        facts = tuple((p["name"], p[k]) for p in people for k in ("place", "job", "color", "thing"))
        start = re.search(rf"(?<!\S){re.escape(answer)}(?!\S)", context).start()
        return QAItem(context, question.format(**target), answer, word_occurrence(context, answer, start),
                      facts)

    def math_item(self, rng: random.Random, eval_split: bool) -> MathItem:
        while True:
            op = rng.choice(sorted(PROBLEMS))
            hi = OPERAND_MAX[op]
            a, b = rng.randint(1, hi), rng.randint(1, hi)
            if op == "minus" and a <= b:
                a, b = b + 1, a
                if a > hi:
                    continue
            name = rng.choice(NAMES)
            if self.problem_reserved(name, op, a, b) == eval_split:
                break
        objs = PLURAL[rng.choice(OBJECTS)]
        q = PROBLEMS[op].format(name=name, a=a, b=b, objs=objs)
        return MathItem(q, op, a, b, apply_op(op, a, b), name, objs)

    def arith_statement(self, rng: random.Random) -> str:
        op = rng.choice(sorted(OPERAND_MAX))
        a, b = rng.randint(1, OPERAND_MAX[op]), rng.randint(1, OPERAND_MAX[op])
        if op == "minus" and a < b:
            a, b = b, a
        return SOLUTION.format(a=a, op=op, b=b, c=apply_op(op, a, b))

    def plain_sentence(self, rng: random.Random) -> str:
        """Filler text; two people it names together are an unreserved pair."""
        while True:
            name, name2 = rng.sample(NAMES, 2)
            if not self.pair_reserved(name, name2):
                break
        return rng.choice(PLAIN).format(
            name=name, name2=name2, place=rng.choice(PLACES), job=rng.choice(JOBS), color=rng.choice(COLORS),
            thing=rng.choice(THINGS), size=rng.choice(SIZES), objs=PLURAL[rng.choice(OBJECTS)], a=rng.randint(2, 9))

    def training_sentence(self, rng: random.Random) -> str:
        """A sentence for parallel data: a plain sentence, a known fact, or part of a training item."""
        kind = rng.random()
        if kind < 0.4:
            return self.plain_sentence(rng)
        if kind < 0.7:
            return self.kb_fact(rng)
        if kind < 0.85:
            return self.qa_item(rng, eval_split=False, n_people=1).context
        return self.math_item(rng, eval_split=False).question.split(" . ")[0] + " ."

    # -- pretraining documents (English; other languages are their translations) ------------------
    def document(self, rng: random.Random, kinds: dict[str, float] = DOC_KINDS) -> str:
        """One document of a kind drawn from ``kinds`` (kind -> weight; default :data:`DOC_KINDS`). A passage's
        questions and gap-fill exercises are one per line."""
        kind = rng.choices(sorted(kinds), weights=[kinds[k] for k in sorted(kinds)])[0]
        if kind == "facts":
            return " ".join(self.kb_fact(rng) for _ in range(rng.randint(3, 6)))
        if kind == "gap_fill":
            lines = []
            for _ in range(rng.randint(3, 6)):
                fact, slot = rng.choice(KB_GAPS)
                sentence, word = self.kb_gap(rng.choice(NAMES), fact, slot)
                lines.append(GAP_FILL.format(sentence=gapped(sentence, word), answer=word))
            return "\n".join(lines)
        if kind == "reading":      # a passage and questions answered from it (the skill toy-XQuAD needs)
            item = self.qa_item(rng, eval_split=False)
            qs = [item] + [self.qa_item_about(rng, item) for _ in range(rng.randint(1, 3))]
            return "\n".join([item.context] + [READING_QA.format(question=q.question, answer=q.answer) for q in qs])
        if kind == "arith":
            return " ".join(self.arith_statement(rng) for _ in range(rng.randint(4, 8)))
        if kind == "problem":      # a worked word problem
            m = self.math_item(rng, eval_split=False)
            return f"{m.question} {m.solution} " + SOLVED.format(name=m.name, c=m.answer, objs=m.objs)
        if kind == "plain":
            return " ".join(self.plain_sentence(rng) for _ in range(rng.randint(3, 6)))
        raise ValueError(f"unknown document kind {kind!r}; known: {sorted(DOC_KINDS)}")

    def qa_item_about(self, rng: random.Random, item: QAItem) -> QAItem:
        """Another question on the same passage (same facts, so still on the same split)."""
        people = {}
        for name, value in item.facts:
            people.setdefault(name, {"name": name})
            key = ("place" if value in PLACES else "job" if value in JOBS
                   else "color" if value in COLORS else "thing")
            people[name][key] = value
        target = people[rng.choice(sorted(people))]
        question = rng.choice(sorted(QUESTIONS))
        answer = target[QUESTIONS[question]]
        start = re.search(rf"(?<!\S){re.escape(answer)}(?!\S)", item.context).start()
        return QAItem(item.context, question.format(**target), answer,
                      word_occurrence(item.context, answer, start), item.facts)

    # -- instructions ------------------------------------------------------------------------------
    def instruction(self, rng: random.Random) -> dict:
        """One Alpaca record (instruction/input/output) plus its ``kind``; training side only."""
        kind = rng.random()
        if kind < 0.40:
            item = self.qa_item(rng, eval_split=False)
            return {"kind": "qa", "instruction": rng.choice(QA_INSTRUCTIONS),
                    "input": QA_INPUT.format(context=item.context, question=item.question),
                    "output": item.answer}
        if kind < 0.75:
            m = self.math_item(rng, eval_split=False)
            return {"kind": "math", "instruction": rng.choice(MATH_INSTRUCTIONS), "input": m.question,
                    "output": m.solution}
        if kind < 0.83:
            stmt = self.arith_statement(rng)
            a, op, b = stmt.split()[:3]
            return {"kind": "arith", "instruction": rng.choice(ARITH_INSTRUCTIONS).format(a=a, op=op, b=b),
                    "input": "", "output": stmt}
        if kind < 0.91:
            fact = self.kb_fact(rng)
            words = fact.split()
            cut = len(words) - 2  # drop the value word and the full stop
            return {"kind": "complete", "instruction": rng.choice(COMPLETE_INSTRUCTIONS),
                    "input": " ".join(words[:cut]), "output": " ".join(words[cut:])}
        if kind < 0.96:
            name = rng.choice(NAMES)
            return {"kind": "about", "instruction": rng.choice(ABOUT_INSTRUCTIONS).format(name=name),
                    "input": "", "output": self.kb_fact(rng, name)}
        n = rng.choice(sorted(NUMBER_WORDS))
        cat = rng.choice(sorted(CATEGORIES))
        picks = rng.sample(CATEGORIES[cat], n)
        return {"kind": "list", "instruction": rng.choice(LIST_INSTRUCTIONS).format(n=NUMBER_WORDS[n], cat=cat),
                "input": "", "output": " , ".join(picks)}
