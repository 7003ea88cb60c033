"""parse_prompt_attention against A1111 v1.10.1's doctests and documented quirks."""

import pytest

from engine.errors import InvalidParamsError
from engine.prompts import parse_prompt_attention


def test_plain_text_has_weight_one() -> None:
    assert parse_prompt_attention("normal text") == [["normal text", 1.0]]


def test_round_brackets_multiply_by_1_1() -> None:
    assert parse_prompt_attention("an (important) word") == [["an ", 1.0], ["important", 1.1], [" word", 1.0]]


def test_unbalanced_bracket_runs_to_the_end() -> None:
    assert parse_prompt_attention("(unbalanced") == [["unbalanced", 1.1]]


def test_escaped_brackets_are_literal() -> None:
    assert parse_prompt_attention(r"\(literal\]") == [["(literal]", 1.0]]


def test_adjacent_equal_weights_merge() -> None:
    assert parse_prompt_attention("(unnecessary)(parens)") == [["unnecessaryparens", 1.1]]


def test_a1111_doctest_example() -> None:
    assert parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ["a ", 1.0],
        ["house", 1.5730000000000004],
        [" ", 1.1],
        ["on", 1.0],
        [" a ", 1.1],
        ["hill", 0.55],
        [", sun, ", 1.1],
        ["sky", 1.4641000000000006],
        [".", 1.1],
    ]


def test_nested_explicit_weights_multiply() -> None:
    assert parse_prompt_attention("((a:1.5) b:1.2)") == [["a", 1.7999999999999998], [" b", 1.2]]


def test_square_brackets_divide_by_1_1() -> None:
    assert parse_prompt_attention("[[a]]") == [["a", 1 / 1.1 / 1.1]]


def test_spaces_around_the_weight_are_allowed() -> None:
    assert parse_prompt_attention("(a : 1.5 )") == [["a ", 1.5]]


def test_break_inserts_a_marker_and_eats_whitespace() -> None:
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]


def test_break_between_commas_splits() -> None:
    assert parse_prompt_attention("a,BREAK,b") == [["a,", 1.0], ["BREAK", -1], [",b", 1.0]]


def test_lowercase_break_is_text() -> None:
    assert parse_prompt_attention("a break b") == [["a break b", 1.0]]


def test_break_inside_brackets_is_weighted_too() -> None:
    assert parse_prompt_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]


def test_lone_backslash_is_swallowed() -> None:
    assert parse_prompt_attention("a \\ b") == [["a  b", 1.0]]


def test_escaped_backslash_is_one_backslash() -> None:
    assert parse_prompt_attention("a \\\\ b") == [["a \\ b", 1.0]]


def test_unmatched_closing_bracket_is_text() -> None:
    assert parse_prompt_attention("a) b]") == [["a) b]", 1.0]]


def test_empty_prompt_is_one_empty_piece() -> None:
    assert parse_prompt_attention("") == [["", 1.0]]


def test_only_brackets_is_one_empty_piece() -> None:
    assert parse_prompt_attention("()") == [["", 1.0]]


def test_exponent_is_not_a_weight() -> None:
    assert parse_prompt_attention("(a:1e2)") == [["a:1e2", 1.1]]


def test_lora_tags_and_braces_pass_through_as_text() -> None:
    assert parse_prompt_attention("{a|b} <lora") == [["{a|b} <lora", 1.0]]


def test_prompt_editing_reaching_the_parser_is_text_weighted_down() -> None:
    assert parse_prompt_attention("[a:b:0.5]") == [["a:b:0.5", 1 / 1.1]]


def test_unicode_and_newlines_are_kept() -> None:
    assert parse_prompt_attention("猫\n(ñ)") == [["猫\n", 1.0], ["ñ", 1.1]]


def test_negative_weight_is_allowed() -> None:
    assert parse_prompt_attention("(a:-1)") == [["a", -1.0]]


def test_malformed_weight_is_refused_where_a1111_crashes() -> None:
    with pytest.raises(InvalidParamsError, match="not a number"):
        parse_prompt_attention("(a:1.2.3)")


def test_malformed_weight_outside_brackets_is_text() -> None:
    assert parse_prompt_attention("a:1.2.3)") == [["a:1.2.3)", 1.0]]
