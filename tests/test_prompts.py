import pytest

from registry.catalog import Chat
from registry.prompts import build_chat, extract_answer, prompt_hash, user_prompt

OPTS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}
YNM = {"A": "yes", "B": "no", "C": "maybe"}

LETTER_CASES = [
    ("Answer: C", "C", False),
    ("The answer is (B).", "B", False),
    ("(C)", "C", False),
    ("\\boxed{C}", "C", False),
    ("so we get \\boxed{\\text{D}}", "D", False),
    ("<answer>A</answer>", "A", False),
    ("<answer> (b) </answer>", "B", False),
    ("Warfarin", "C", False),  # the option text itself
    ("Let me think.\nHeparin acts on antithrombin.\nB", "B", False),  # a final line
    ("Step 1...\nStep 2...\nC. Warfarin", "C", False),
    ("**Answer:** D", "D", False),
    ("answer: c", "C", False),  # lowercase letter
    ("ANSWER: d.", "D", False),
    ("First I thought Answer: A, but on reflection the final answer is B", "B", False),  # the last statement wins
    ("<think>Answer: A?</think>\nAnswer: D", "D", False),  # thinking is not the answer
    ("Answer: A or C", None, True),  # two letters: ambiguous, flagged
    ("Answer: A, B", None, True),
    ("Answer: E", None, True),  # not an option
    ("The answer is a bleeding disorder", None, True),  # lowercase 'a' is an article here
    ("Answer: Cardiomyopathy", None, True),  # letter inside a word
    ("", None, True),
    ("I am not sure.", None, True),
    ("<think>Considering A and B, the answer is", None, True),  # thinking cut off by the token limit
]


@pytest.mark.parametrize(("text", "expected", "failed"), LETTER_CASES)
def test_letter_extraction(text, expected, failed):
    got = extract_answer(text, OPTS, "letter")
    assert (got.answer, got.parse_failed) == (expected, failed), got


TEN = {k: f"option {k}" for k in "ABCDEFGHIJ"}


@pytest.mark.parametrize(
    ("text", "expected", "failed"),
    [
        ("I think the answer is B", "B", False),  # 'I' is an option letter here, but this 'I' is a word
        ("I see that C is the most appropriate answer.", "C", False),
        ("Looking again, option H is correct.", "H", False),
        ("A patient like this needs imaging", None, True),
        ("I.", "I", False),
        ("J) option J", "J", False),
    ],
)
def test_letters_that_are_words_with_ten_options(text, expected, failed):
    got = extract_answer(text, TEN, "letter")
    assert (got.answer, got.parse_failed) == (expected, failed), got


@pytest.mark.parametrize(
    ("text", "expected", "failed"),
    [
        ("Answer: yes", "A", False),
        ("No.", "B", False),
        ("maybe", "C", False),
        ("\\boxed{no}", "B", False),
        ("The evidence is mixed, so the answer is maybe.", "C", False),
        ("Answer: B", "B", False),  # the option letter of 'no'
        ("Yes or no", None, True),
        ("It depends on the cohort", None, True),
    ],
)
def test_yes_no_maybe_extraction(text, expected, failed):
    got = extract_answer(text, YNM, "yes_no_maybe")
    assert (got.answer, got.parse_failed) == (expected, failed), got


def test_think_strip_ignores_an_unclosed_think_block():
    assert extract_answer("<think>Answer: A", OPTS, "letter", think="strip").parse_failed
    assert extract_answer("reasoning</think>Answer: C", OPTS, "letter", think="strip").answer == "C"


def test_prompt_lists_options_and_instruction_and_hash_tracks_every_byte():
    row = {"question": "Which drug?", "context": None, "options": OPTS, "answer_format": "letter"}
    text = user_prompt(row)
    assert "Question: Which drug?" in text and "C. Warfarin" in text and "Answer: X" in text
    chat = build_chat(row, Chat(system="Be brief.", prompt="cot"))
    assert [m["role"] for m in chat] == ["system", "user"] and "step by step" in chat[1]["content"]
    assert prompt_hash(chat) != prompt_hash(build_chat(row, Chat(system="Be brief!", prompt="cot")))
    # sha256 of the JSON text '[{"content": "Be brief.", "role": "system"}, {"content": "Which drug ... units.", "role": "user"}]'
    # (keys sorted, the en dash as UTF-8, not \u2013), first 16 hex digits: computed with `printf '%s' ... | sha256sum`
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Which drug reverses heparin? Protamine – 1 mg per 100 units."},
    ]
    assert prompt_hash(messages) == "91f4450accc6ffd0"
    assert prompt_hash([{"content": m["content"], "role": m["role"]} for m in messages]) == "91f4450accc6ffd0"  # key order is not content
    assert prompt_hash([messages[0], {**messages[1], "content": messages[1]["content"][:-1]}]) != "91f4450accc6ffd0"  # one byte less
    ynm = user_prompt({"question": "Does X work?", "context": "Abstract text.", "options": YNM, "answer_format": "yes_no_maybe"})
    assert ynm.startswith("Abstract text.") and "yes, no or maybe" in ynm and "A. yes" not in ynm


HUATUO_CASES = [
    ("The answer is C.", ("C", "C", "answer phrase")),
    ("First the answer is B, but on reflection the answer is D.", ("B", "D", "answer phrase")),
    ("<think>the answer is A</think>\nSo: (B)", ("B", "B", "letter")),  # only what follows </think> is read
    ("## Final Response\n\nI would give C, not D.", ("C", "D", "letter")),
    ("A patient like this needs warfarin", ("C", "C", "option text")),  # "A " opening a phrase is not a letter
    ("heparin first, then warfarin", ("C", "C", "option text")),  # first and last: the latest-starting option, as upstream
    ("clopidogrl", ("D", "D", "closest string")),
    ("", ("D", "D", "closest string")),  # nothing: the last option wins the tie
]


@pytest.mark.parametrize(("text", "expected"), HUATUO_CASES)
def test_huatuo_choice_matcher(text, expected):
    from registry.prompts import match_choice

    m = match_choice(text, OPTS)
    assert (m.first, m.last, m.rule) == expected


def test_strict_prompt_is_huatuos_and_lists_yes_no_maybe_as_options():
    from registry.prompts import STRICT

    row = {"question": "Does X help?", "context": "Background.", "options": YNM, "answer_format": "yes_no_maybe"}
    assert user_prompt(row, "strict") == f"{STRICT}\nBackground.\nDoes X help?\nA. yes\nB. no\nC. maybe"
    assert STRICT.endswith("ensuring your response concludes with the correct option in the format: 'The answer is A.'.")
