"""Prompt editing and alternation schedules, against A1111 v1.10.1's doctests and documented rules."""

import pytest

from engine.errors import InvalidParamsError
from engine.prompts import get_learned_conditioning_prompt_schedules, prompt_schedule
from engine.prompts.editing import MAX_ALTERNATIVES, MAX_EDITS, MAX_NESTING


def schedule(prompt: str, steps: int = 10, hires_steps: int | None = None, old: bool = False) -> list[list[int | str]]:
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]


def test_plain_prompt_is_one_entry() -> None:
    assert schedule("test") == [[10, "test"]]


def test_to_when_adds_text_after_the_step() -> None:
    assert schedule("a [b:3]") == [[3, "a "], [10, "a b"]]


def test_whitespace_before_the_number_is_allowed() -> None:
    assert schedule("a [b: 3]") == [[3, "a "], [10, "a b"]]


def test_whitespace_after_the_number_is_allowed() -> None:
    assert schedule("a [b:3 ]") == [[3, "a "], [10, "a b"]]


def test_emphasis_inside_an_edit_stays_text() -> None:
    assert schedule("a [[[b]]:2]") == [[2, "a "], [10, "a [[b]]"]]


def test_weighted_emphasis_inside_an_edit_stays_text() -> None:
    assert schedule("[(a:2):3]") == [[3, ""], [10, "(a:2)"]]


def test_from_to_keeps_the_spaces_around_each_side() -> None:
    assert schedule("a [b : c : 1] d") == [[1, "a b  d"], [10, "a  c  d"]]


def test_nested_edits() -> None:
    assert schedule("a[b:[c:d:2]:1]e") == [[1, "abe"], [2, "ace"], [10, "ade"]]


def test_unbalanced_bracket_is_text() -> None:
    assert schedule("a [unbalanced") == [[10, "a [unbalanced"]]


def test_fraction_is_a_share_of_the_steps() -> None:
    assert schedule("a [b:.5] c") == [[5, "a  c"], [10, "a b c"]]


def test_stray_brackets_around_an_edit_are_text() -> None:
    assert schedule("((a][:b:c [d:3]") == [[3, "((a][:b:c "], [10, "((a][:b:c d"]]


def test_alternation_cycles_every_step() -> None:
    assert schedule("[a|(b:1.1)]", 4) == [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"]]


def test_alternation_allows_an_empty_option() -> None:
    assert schedule("[fe|]male", 4) == [[1, "female"], [2, "male"], [3, "female"], [4, "male"]]


def test_alternation_with_three_options() -> None:
    assert schedule("[a|b|c]", 4) == [[1, "a"], [2, "b"], [3, "c"], [4, "a"]]


def test_alternation_with_several_empty_options() -> None:
    assert schedule("[fe|||]male", 5) == [[1, "female"], [2, "male"], [3, "male"], [4, "male"], [5, "female"]]


def test_from_to_fraction() -> None:
    assert schedule("[a:b:0.5]") == [[5, "a"], [10, "b"]]


def test_from_nothing_removes_after_the_step() -> None:
    assert schedule("x[a::4]") == [[4, "xa"], [10, "x"]]


def test_one_point_zero_never_switches() -> None:
    assert schedule("[a:b:1.0]") == [[10, "a"]]


def test_integer_one_switches_after_the_first_step() -> None:
    assert schedule("[a:b:1]") == [[1, "a"], [10, "b"]]


def test_when_zero_uses_the_new_text_throughout() -> None:
    assert schedule("[a:b:0]") == [[10, "b"]]


def test_negative_when_uses_the_new_text_throughout() -> None:
    assert schedule("[a:b:-3]") == [[10, "b"]]


def test_fraction_above_one_is_clamped_to_the_steps() -> None:
    assert schedule("[a:b:2.5]") == [[10, "a"]]


def test_absolute_step_past_the_end_is_clamped() -> None:
    assert schedule("[a:b:25]") == [[10, "a"]]


def test_fraction_rounds_down() -> None:
    assert schedule("[a:b:0.55]", 7) == [[3, "a"], [7, "b"]]


def test_exponent_without_a_point_is_an_absolute_step() -> None:
    assert schedule("[a:b:5e-1]") == [[10, "b"]]


def test_old_timelines_treat_values_below_one_as_fractions() -> None:
    assert schedule("[a:b:0.5]", old=True) == [[5, "a"], [10, "b"]]


def test_old_timelines_treat_one_point_zero_as_step_one() -> None:
    assert schedule("[a:b:1.0]", old=True) == [[1, "a"], [10, "b"]]


def test_hires_fraction_runs_from_one_to_two() -> None:
    assert schedule("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]


def test_hires_first_pass_fraction_has_already_switched() -> None:
    assert schedule("a [b:.5] c", 10, 10) == [[10, "a b c"]]


def test_hires_integers_are_offset_by_the_base_steps() -> None:
    assert schedule("[a:b:14]", 10, 8) == [[4, "a"], [8, "b"]]


def test_pipe_outside_brackets_leaves_the_prompt_unchanged() -> None:
    assert schedule("a|b [c:3]") == [[10, "a|b [c:3]"]]


def test_curly_alternation_is_not_syntax() -> None:
    assert schedule("{a|b} [c:3]") == [[10, "{a|b} [c:3]"]]


def test_trailing_backslash_leaves_the_prompt_unchanged() -> None:
    assert schedule("[a:3] \\") == [[10, "[a:3] \\"]]


def test_escaped_brackets_are_not_an_edit() -> None:
    assert schedule(r"\[a:3\]") == [[10, r"\[a:3\]"]]


def test_three_colons_are_not_an_edit() -> None:
    assert schedule("[a:b:c:3]") == [[10, "[a:b:c:3]"]]


def test_edit_without_a_number_is_text() -> None:
    assert schedule("[a:b] [c:3]") == [[3, "[a:b] "], [10, "[a:b] c"]]


def test_edit_inside_emphasis() -> None:
    assert schedule("([a:b:2]:1.2)") == [[2, "(a:1.2)"], [10, "(b:1.2)"]]


def test_alternation_inside_an_edit() -> None:
    assert schedule("[[a|b]:c:2]", 3) == [[1, "a"], [2, "b"], [3, "c"]]


def test_multiline_prompt_and_unicode() -> None:
    assert schedule("猫\n[犬:2]") == [[2, "猫\n"], [10, "猫\n犬"]]


def test_empty_prompt() -> None:
    assert schedule("") == [[10, ""]]


def test_each_prompt_gets_its_own_schedule() -> None:
    assert get_learned_conditioning_prompt_schedules(["a", "[b:2]", "a"], 4) == [
        [[4, "a"]],
        [[2, ""], [4, "b"]],
        [[4, "a"]],
    ]


def test_many_edits_from_the_a1111_comment() -> None:
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert schedule(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_prompt_schedule_returns_pairs() -> None:
    assert prompt_schedule("a [b:3]", 10) == [(3, "a "), (10, "a b")]


def test_nesting_up_to_the_limit_parses_and_deeper_is_refused_with_the_limit_named() -> None:
    deepest = "[" * (MAX_NESTING - 1) + "[a:b:3]" + "]" * (MAX_NESTING - 1)
    inner = "[" * (MAX_NESTING - 1)
    assert schedule(deepest) == [
        [3, inner + "a" + "]" * (MAX_NESTING - 1)],
        [10, inner + "b" + "]" * (MAX_NESTING - 1)],
    ]
    for prompt in ("(" * 2000 + "a" + ")" * 2000, "(" * (MAX_NESTING + 1) + "a"):
        with pytest.raises(InvalidParamsError, match=f"more than {MAX_NESTING} deep"):
            schedule(prompt)


def test_prompt_editing_brackets_and_alternatives_have_their_own_limits() -> None:
    assert len(schedule("[a|b] " * MAX_EDITS)) == 10
    with pytest.raises(InvalidParamsError, match=f"{MAX_EDITS + 1} prompt-editing or alternation brackets"):
        schedule("[a|b] " * (MAX_EDITS + 1))
    options = "|".join(str(n) for n in range(MAX_ALTERNATIVES + 1))
    with pytest.raises(InvalidParamsError, match=f"{MAX_ALTERNATIVES + 1} options; the limit is {MAX_ALTERNATIVES}"):
        schedule(f"a [{options}]")
